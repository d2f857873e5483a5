"""Build the configured providers, in waterfall order."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from syncd.config import Config, ContactOutConfig, InsideViewConfig, LeadfeederConfig
from syncd.model import Vendor
from syncd.vendors.base import Provider


def build_providers(
    config: Config, *, transports: Mapping[Vendor, httpx.AsyncBaseTransport] | None = None
) -> dict[Vendor, Provider]:
    region = config.sync.default_region
    out: dict[Vendor, Provider] = {}
    for vendor in config.enabled_vendors():
        section = config.vendor(vendor)
        transport = (transports or {}).get(vendor)
        if isinstance(section, InsideViewConfig):
            from syncd.vendors.insideview import InsideViewProvider

            out[vendor] = InsideViewProvider(
                api=section.http_settings(),
                login=section.login_http_settings(),
                client_id=section.client_id,
                client_secret=section.client_secret,
                job_threshold=section.job_threshold,
                default_region=region,
                api_transport=transport,
                login_transport=transport,
            )
        elif isinstance(section, LeadfeederConfig):
            from syncd.vendors.leadfeeder import LeadfeederProvider

            out[vendor] = LeadfeederProvider(
                section.http_settings(),
                section.api_key,
                section.account_id,
                default_region=region,
                transport=transport,
            )
        elif isinstance(section, ContactOutConfig):
            from syncd.vendors.contactout import ContactOutProvider

            out[vendor] = ContactOutProvider(
                section.http_settings(),
                section.token,
                checker_rate=section.checker_rate_limit,
                default_region=region,
                verify_emails=config.enrich.verify_emails,
                transport=transport,
            )
    return out
