"""The Yeastar PBX simulator, driven over real loopback HTTP (uvicorn in a thread, httpx client)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from syncd.sim.dataset import Dataset
from syncd.sim.faults import Faults
from syncd.sim.pbx import PbxError, PbxSimulator, seed_fields
from syncd.sim.server import SimServer

CLIENT_ID = "syncd-demo-client"
SECRET = "syncd-demo-secret"
CREDS = {"username": CLIENT_ID, "password": SECRET}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Api:
    """A thin client: one httpx.Client on the simulator, an optional current token."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=f"{base_url}/openapi/v1.0/", headers={"User-Agent": "OpenAPI"})
        self.token: str | None = None

    def login(self, **body: Any) -> dict[str, Any]:
        answer = self.post("get_token", body or CREDS, auth=False)
        if answer["errcode"] == 0:
            self.token = answer["access_token"]
        return answer

    def get(self, endpoint: str, **params: Any) -> dict[str, Any]:
        if self.token is not None:
            params.setdefault("access_token", self.token)
        response = self.http.get(endpoint, params=params)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        result: dict[str, Any] = response.json()
        return result

    def post(self, endpoint: str, body: Any, *, auth: bool = True) -> dict[str, Any]:
        params = {"access_token": self.token} if auth and self.token else {}
        response = self.http.post(endpoint, params=params, json=body)
        assert response.status_code == 200
        result: dict[str, Any] = response.json()
        return result


@contextmanager
def serve(sim: PbxSimulator, *, login: bool = True) -> Iterator[Api]:
    with SimServer(sim.app) as srv:
        api = Api(srv.url)
        try:
            if login:
                assert api.login()["errcode"] == 0
            yield api
        finally:
            api.http.close()


def numbers(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"num_type": t, "number": n} for t, n in pairs]


# --- tokens ---------------------------------------------------------------------------------------


def test_token_lifecycle_get_refresh_del() -> None:
    sim = PbxSimulator(Dataset(3))
    with serve(sim, login=False) as api:
        first = api.login()
        assert first["errcode"] == 0 and first["errmsg"] == "SUCCESS"
        assert first["access_token_expire_time"] == 1800
        assert first["refresh_token_expire_time"] == 86400
        assert api.get("company_contact/list")["total_number"] == 3
        assert sim.live_tokens() == 1

        second = api.post("refresh_token", {"refresh_token": first["refresh_token"]}, auth=False)
        assert second["errcode"] == 0
        assert second["access_token"] != first["access_token"]
        assert second["refresh_token"] != first["refresh_token"]
        # the old pair is dead: access token and refresh token
        assert api.get("company_contact/list", access_token=first["access_token"])["errcode"] == 10004
        again = api.post("refresh_token", {"refresh_token": first["refresh_token"]}, auth=False)
        assert again["errcode"] == 10004
        assert api.get("company_contact/list", access_token=second["access_token"])["errcode"] == 0
        assert sim.live_tokens() == 1

        assert api.get("del_token", access_token=second["access_token"])["errcode"] == 0
        assert api.get("company_contact/list", access_token=second["access_token"])["errcode"] == 10004
        refreshed = api.post("refresh_token", {"refresh_token": second["refresh_token"]}, auth=False)
        assert refreshed["errcode"] == 10004
        assert sim.live_tokens() == 0


def test_tokens_expire_on_the_clock() -> None:
    clock = FakeClock()
    sim = PbxSimulator(Dataset(2), clock=clock, token_lifetime=60, refresh_lifetime=600)
    with serve(sim, login=False) as api:
        pair = api.login()
        assert pair["access_token_expire_time"] == 60
        clock.now += 59
        assert api.get("company_contact/list")["errcode"] == 0
        clock.now += 1
        assert api.get("company_contact/list") == {"errcode": 10004, "errmsg": "TOKEN EXPIRED"}
        assert sim.live_tokens() == 0
        fresh = api.post("refresh_token", {"refresh_token": pair["refresh_token"]}, auth=False)
        assert fresh["errcode"] == 0
        assert api.get("company_contact/list", access_token=fresh["access_token"])["errcode"] == 0
        clock.now += 600
        late = api.post("refresh_token", {"refresh_token": fresh["refresh_token"]}, auth=False)
        assert late["errcode"] == 10004


def test_expire_tokens_and_unknown_or_missing_token() -> None:
    sim = PbxSimulator(Dataset(2))
    with serve(sim) as api:
        assert api.get("company_contact/list", access_token="nope")["errcode"] == 10004
        assert api.http.get("company_contact/list").json()["errcode"] == 10004  # no token at all
        refresh = api.token
        assert refresh is not None
        sim.expire_tokens()
        assert api.get("company_contact/list")["errcode"] == 10004
        assert api.get("del_token")["errcode"] == 10004
        assert api.login()["errcode"] == 0
        assert api.get("company_contact/list")["errcode"] == 0


def test_at_most_eight_live_tokens() -> None:
    sim = PbxSimulator()
    with serve(sim, login=False) as api:
        pairs = [api.login() for _ in range(8)]
        tokens = [p["access_token"] for p in pairs]
        assert len(set(tokens)) == 8 and sim.live_tokens() == 8
        assert api.login() == {"errcode": 60002, "errmsg": "MAX LIMITATION EXCEEDED"}
        # refreshing a live pair replaces it: allowed at the cap
        renewed = api.post("refresh_token", {"refresh_token": pairs[1]["refresh_token"]}, auth=False)
        assert renewed["errcode"] == 0 and sim.live_tokens() == 8
        assert api.get("del_token", access_token=tokens[0])["errcode"] == 0
        assert api.login()["errcode"] == 0
        assert api.login()["errcode"] == 60002
        sim.expire_tokens()
        assert api.login()["errcode"] == 0
        assert sim.live_tokens() == 1


def test_five_failed_logins_block_the_ip() -> None:
    clock = FakeClock()
    sim = PbxSimulator(Dataset(1), clock=clock, block_seconds=600)
    with serve(sim, login=False) as api:
        bad = {"username": CLIENT_ID, "password": "wrong"}
        for _ in range(4):
            assert api.login(**bad)["errcode"] == 10005
        assert sim.failed_logins == {"127.0.0.1": 4}
        assert api.login()["errcode"] == 0  # a success resets the count
        assert sim.failed_logins == {}
        for _ in range(5):
            assert api.login(**bad)["errcode"] == 10005
        assert "127.0.0.1" in sim.blocked
        # every later call answers 70004, good credentials and valid tokens included
        blocked = api.login()
        assert blocked["errcode"] == 70004 and blocked["errmsg"] == "ACCOUNT IP BLOCKED"
        assert isinstance(blocked["block_expire_time"], int)
        assert api.get("company_contact/list")["errcode"] == 70004
        assert api.get("no/such/endpoint")["errcode"] == 70004
        clock.now += 599
        assert api.get("company_contact/list")["errcode"] == 70004
        clock.now += 1
        assert api.get("company_contact/list")["errcode"] == 0  # the block ran out
        for _ in range(5):
            api.login(**bad)
        assert api.get("company_contact/list")["errcode"] == 70004
        sim.unblock()
        assert api.get("company_contact/list")["errcode"] == 0
        assert api.login(username="someone", password=SECRET)["errcode"] == 10005
        assert api.login(password=SECRET)["errcode"] == 10005


def test_app_permissions_and_allowed_ips() -> None:
    sim = PbxSimulator(Dataset(2))
    with serve(sim) as api:
        sim.denied = {"company_contact/update"}
        assert api.get("company_contact/list", page_size=1)["errcode"] == 0
        denied = api.post("company_contact/update", {"id": 1, "email": "a@example.com"})
        assert (denied["errcode"], denied["errmsg"]) == (10005, "ACCESS DENIED: No access permission")
        assert sim.updates == []
        assert api.get("company_contact/update")["errcode"] == 10001  # wrong method: still unknown
        sim.allowed_ips = {"192.0.2.1"}
        assert api.get("company_contact/list")["errcode"] == 70087
        assert api.login()["errcode"] == 70087  # the allowed-IP list guards the login too
        assert sim.failed_logins == {}  # ...and a refused IP is no failed login
        sim.allowed_ips = {"127.0.0.1"}
        assert api.get("company_contact/list")["errcode"] == 0


def test_user_agent_is_required() -> None:
    sim = PbxSimulator(Dataset(1))
    with serve(sim) as api:
        request = api.http.build_request("GET", "company_contact/list", params={"access_token": api.token})
        del request.headers["User-Agent"]
        answer = api.http.send(request).json()
        assert answer["errcode"] == 40001 and "User-Agent" in answer["errmsg"]
        request = api.http.build_request("POST", "get_token", json=CREDS)
        del request.headers["User-Agent"]
        assert api.http.send(request).json()["errcode"] == 40001
        assert sim.failed_logins == {}


def test_unknown_endpoint_wrong_method_and_bad_json() -> None:
    sim = PbxSimulator(Dataset(1))
    with serve(sim) as api:
        assert api.get("company_contact/nope") == {"errcode": 10001, "errmsg": "INTERFACE NOT EXISTED"}
        assert api.get("get_token")["errcode"] == 10001  # POST-only
        assert api.post("company_contact/list", {})["errcode"] == 10001  # GET-only
        assert api.http.get("/elsewhere").json()["errcode"] == 10001
        raw = api.http.post("company_contact/create", params={"access_token": api.token}, content=b"{nope")
        assert raw.json()["errcode"] == 40001
        assert api.post("company_contact/create", [1, 2])["errcode"] == 40001
        assert sim.calls["company_contact/nope"] == 1
        assert sim.calls["get_token"] == 2


# --- company_contact/list and search ---------------------------------------------------------------


def pull_all(api: Api, page_size: int | None = None) -> tuple[int, list[int], list[dict[str, Any]]]:
    """Page like a client does: until page * page_size >= total_number. Returns total, page sizes, rows."""
    rows: list[dict[str, Any]] = []
    sizes: list[int] = []
    page = 1
    while True:
        params: dict[str, Any] = {"page": page}
        if page_size is not None:
            params["page_size"] = page_size
        answer = api.get("company_contact/list", **params)
        assert answer["errcode"] == 0
        sizes.append(len(answer["data"]))
        rows.extend(answer["data"])
        if page * (page_size or 10_000) >= answer["total_number"]:
            return answer["total_number"], sizes, rows
        page += 1


def test_list_paging_empty_and_single() -> None:
    with serve(PbxSimulator()) as api:
        assert pull_all(api) == (0, [0], [])
    with serve(PbxSimulator(Dataset(1))) as api:
        total, sizes, rows = pull_all(api)
        assert (total, sizes, [r["id"] for r in rows]) == (1, [1], [1])
        assert api.get("company_contact/list", page=2) == {
            "errcode": 0,
            "errmsg": "SUCCESS",
            "total_number": 1,
            "data": [],
        }


def test_list_paging_at_10000_and_10001() -> None:
    sim = PbxSimulator(Dataset(10_001))
    with serve(sim) as api:
        total, sizes, rows = pull_all(api)
        assert total == 10_001 and sizes == [10_000, 1]
        assert [r["id"] for r in rows] == list(range(1, 10_002))
        sim.delete_contact(10_001)
        total, sizes, rows = pull_all(api)
        assert total == 10_000 and sizes == [10_000]
        assert api.get("company_contact/list", page=2)["data"] == []
        total, sizes, _ = pull_all(api, page_size=3000)
        assert total == 10_000 and sizes == [3000, 3000, 3000, 1000]


def test_list_20000_contacts_in_two_pages() -> None:
    sim = PbxSimulator(Dataset(20_000))
    with serve(sim) as api:
        total, sizes, rows = pull_all(api)
        assert total == 20_000 and sizes == [10_000, 10_000]
        assert len({r["id"] for r in rows}) == 20_000
        assert sim.calls["company_contact/list"] == 2


def test_page_parameters_are_checked() -> None:
    with serve(PbxSimulator(Dataset(5))) as api:
        answer = api.get("company_contact/list", page_size=10_001)
        assert answer["errcode"] == 40002 and "page_size" in answer["errmsg"]
        assert api.get("company_contact/list", page_size=10_000)["errcode"] == 0
        for bad in ({"page": 0}, {"page": "x"}, {"page_size": 0}, {"page_size": "5_0"}):
            assert api.get("company_contact/list", **bad)["errcode"] == 40002
        assert api.get("company_contact/list", sort_by="street")["errcode"] == 40002
        assert api.get("company_contact/list", order_by="up")["errcode"] == 40002
        assert api.get("company_contact/search", page_size=20_000, search_value="a")["errcode"] == 40002


def test_flat_form_fields() -> None:
    ds = Dataset(30)
    with serve(PbxSimulator(ds)) as api:
        rows = api.get("company_contact/list")["data"]
    seed = ds.contact(0)
    row = rows[0]
    assert list(row) == [
        "id",
        "contact_name",
        "company",
        "email",
        "phonebook_list",
        "remark",
        "business",
        "business2",
        "mobile",
        "mobile2",
        "home",
        "home2",
        "business_fax",
        "home_fax",
        "other",
    ]
    assert row["contact_name"] == f"{seed.first_name} {seed.last_name}"
    assert row["company"] == seed.company and row["remark"] == seed.remark
    assert row["business"] == seed.numbers["business_number"]
    assert row["other"] == seed.numbers.get("other_number", "")
    names = {p.id: p.name for p in ds.phonebooks}
    assert row["phonebook_list"] == [{"id": p, "name": names[p]} for p in seed.phonebook_ids]
    assert all("job_title" not in r for r in rows)


def test_sorting() -> None:
    with serve(PbxSimulator(Dataset(200))) as api:
        rows = api.get("company_contact/list", sort_by="contact_name")["data"]
        assert [r["contact_name"] for r in rows] == sorted(r["contact_name"] for r in rows)
        rows = api.get("company_contact/list", sort_by="id", order_by="desc")["data"]
        assert [r["id"] for r in rows] == list(range(200, 0, -1))
        rows = api.get("company_contact/list", sort_by="mobile", order_by="desc", page_size=5)["data"]
        assert rows[0]["mobile"] >= rows[-1]["mobile"]


def test_search_is_a_case_insensitive_substring_match() -> None:
    sim = PbxSimulator()
    a = sim.add_contact(
        first_name="Søren",
        last_name="Müller",
        company="Acme GmbH",
        number_list=numbers(("mobile_number", "+4915112345")),
    )
    b = sim.add_contact(
        first_name="Jay",
        email="jay@closet.example",
        company="Closet",
        number_list=numbers(("home_number", "555-0134")),
    )
    with serve(sim) as api:

        def found(value: str) -> list[int]:
            answer = api.get("company_contact/search", search_value=value)
            assert answer["total_number"] == len(answer["data"])
            return [r["id"] for r in answer["data"]]

        assert found("SØREN MÜ") == [a]
        assert found("acme") == [a]
        assert found("CLOSET.EXAMPLE") == [b]
        assert found("0134") == [b]
        assert found("49151") == [a]
        assert found("nobody") == []
        assert found("") == [a, b]


# --- get / query ------------------------------------------------------------------------------------


def test_get_returns_the_detailed_form() -> None:
    ds = Dataset(10)
    sim = PbxSimulator(ds)
    with serve(sim) as api:
        answer = api.get("company_contact/get", id=4)
        assert api.get("company_contact/get", id=99) == {"errcode": 60001, "errmsg": "DATA NOT FOUND"}
        assert api.get("company_contact/get")["errcode"] == 40002
    seed = ds.contact(3)
    data = answer["data"]
    assert data == sim.contact(4)
    assert list(data) == [
        "id",
        "first_name",
        "last_name",
        "company",
        "email",
        "phonebook_list",
        "remark",
        "number_list",
        "zip_code",
        "street",
        "city",
        "state",
        "country",
    ]
    assert (data["first_name"], data["last_name"], data["city"]) == (
        seed.first_name,
        seed.last_name,
        seed.city,
    )
    assert {n["num_type"]: n["number"] for n in data["number_list"]} == seed.numbers
    assert [p["id"] for p in data["phonebook_list"]] == list(seed.phonebook_ids)


def test_query_by_ids_and_id() -> None:
    with serve(PbxSimulator(Dataset(150))) as api:
        assert [c["id"] for c in api.get("company_contact/query", ids="3,4")["data"]] == [3, 4]
        assert [c["id"] for c in api.get("company_contact/query", id="3,4")["data"]] == [3, 4]
        assert [c["id"] for c in api.get("company_contact/query", ids="5,999,6")["data"]] == [5, 6]
        assert "number_list" in api.get("company_contact/query", ids="7")["data"][0]
        hundred = ",".join(str(i) for i in range(1, 101))
        assert len(api.get("company_contact/query", ids=hundred)["data"]) == 100
        answer = api.get("company_contact/query", ids=",".join(str(i) for i in range(1, 102)))
        assert answer["errcode"] == 40002
        assert (
            api.get("company_contact/query", id=",".join(str(i) for i in range(1, 102)))["errcode"] == 40002
        )
        assert api.get("company_contact/query")["errcode"] == 40002
        assert api.get("company_contact/query", ids="3,x")["errcode"] == 40002


# --- create / update / delete ------------------------------------------------------------------------


def test_create_then_read_back_and_delete() -> None:
    sim = PbxSimulator(Dataset(3))
    with serve(sim) as api:
        answer = api.post(
            "company_contact/create",
            {
                "first_name": "Jay",
                "last_name": "Prichett",
                "email": "jayprichett@icloud.com",
                "number_list": numbers(("business_number", "001-5503308"), ("mobile_number", "15735810000")),
                "phonebook_id_list": [5, 3],
                "city": "Baltimore",
            },
        )
        assert answer["errcode"] == 0 and answer["id"] == 4
        detail = api.get("company_contact/get", id=4)["data"]
        assert detail["city"] == "Baltimore" and detail["street"] == ""
        assert [p["id"] for p in detail["phonebook_list"]] == [3, 5]
        row = api.get("company_contact/list")["data"][-1]
        assert (row["contact_name"], row["business"], row["mobile"]) == (
            "Jay Prichett",
            "001-5503308",
            "15735810000",
        )
        assert (
            api.post("company_contact/create", {"number_list": numbers(("mobile_number", "1"))})["errcode"]
            == 40002
        )
        assert api.post("company_contact/create", {"first_name": "X"})["errcode"] == 40002
        assert api.get("company_contact/delete", id=4)["errcode"] == 0
        assert api.get("company_contact/get", id=4)["errcode"] == 60001
        assert api.get("company_contact/delete", id=4)["errcode"] == 60001
        assert api.get("company_contact/list")["total_number"] == 3
        # ids are never reused
        assert (
            api.post(
                "company_contact/create", {"first_name": "Y", "number_list": numbers(("other_number", "7"))}
            )["id"]
            == 5
        )
    assert sim.contact_count() == 4


def test_contact_capacity() -> None:
    sim = PbxSimulator(Dataset(2), max_contacts=3)
    with serve(sim) as api:
        body = {"first_name": "A", "number_list": numbers(("mobile_number", "1"))}
        assert api.post("company_contact/create", body)["errcode"] == 0
        assert api.post("company_contact/create", body)["errcode"] == 60002


def test_update_replaces_lists_and_keeps_omitted_fields() -> None:
    ds = Dataset(5)
    sim = PbxSimulator(ds)
    before = sim.contact(1)
    assert len(before["number_list"]) == 2 and before["phonebook_list"]
    with serve(sim) as api:
        body = {"id": 1, "number_list": numbers(("home_number", "+12125550100")), "phonebook_id_list": [2]}
        assert api.post("company_contact/update", body) == {"errcode": 0, "errmsg": "SUCCESS"}
        after = api.get("company_contact/get", id=1)["data"]
        assert after["number_list"] == numbers(("home_number", "+12125550100"))
        assert after["phonebook_list"] == [{"id": 2, "name": "Suppliers"}]
        for kept in (
            "first_name",
            "last_name",
            "company",
            "email",
            "remark",
            "zip_code",
            "street",
            "city",
            "country",
        ):
            assert after[kept] == before[kept]
        # the flat form follows the change (cached bytes invalidated)
        row = api.get("company_contact/list", page_size=1)["data"][0]
        assert (row["business"], row["mobile"], row["home"]) == ("", "", "+12125550100")
        assert (
            api.post("company_contact/update", {"id": 1, "email": "a@b.example", "remark": ""})["errcode"]
            == 0
        )
        after2 = sim.contact(1)
        assert (after2["email"], after2["remark"]) == ("a@b.example", "")
        assert after2["number_list"] == after["number_list"]
        assert api.post("company_contact/update", {"id": 1, "phonebook_id_list": []})["errcode"] == 0
        assert sim.contact(1)["phonebook_list"] == []
        assert api.post("company_contact/update", {"id": 77, "remark": "x"})["errcode"] == 60001
        assert api.post("company_contact/update", {"remark": "x"})["errcode"] == 40002
        assert api.post("company_contact/update", {"id": "1", "remark": "x"})["errcode"] == 40002
    assert sim.updates == [
        body,
        {"id": 1, "email": "a@b.example", "remark": ""},
        {"id": 1, "phonebook_id_list": []},
    ]
    assert sim.calls["company_contact/update"] == 6


N = "mobile_number"
VALIDATION_CASES: list[tuple[str, dict[str, Any], int, str]] = [
    ("number 32 chars", {"number_list": numbers((N, "1" * 32))}, 40002, "number_list[0].number"),
    ("number with space", {"number_list": numbers((N, "+1 212 555"))}, 40002, "number_list[0].number"),
    ("number bad char", {"number_list": numbers((N, "+1/212"))}, 40002, "number_list[0].number"),
    ("number empty", {"number_list": numbers((N, ""))}, 40002, "number_list[0].number"),
    ("number not a string", {"number_list": [{"num_type": N, "number": 5}]}, 40002, "number_list[0].number"),
    ("num_type unknown", {"number_list": numbers(("pager", "1"))}, 40002, "number_list[0].num_type"),
    ("num_type twice", {"number_list": numbers((N, "1"), (N, "2"))}, 40002, "number_list[1].num_type"),
    ("no number", {"number_list": []}, 40002, "number_list"),
    ("number_list not a list", {"number_list": "123"}, 40002, "number_list"),
    ("email bad chars", {"email": "jay+x@a.example"}, 40002, "email"),
    ("email no at", {"email": "jay.a.example"}, 40002, "email"),
    ("email short tld", {"email": "jay@a.e"}, 40002, "email"),
    ("email two ats", {"email": "j@y@a.example"}, 40002, "email"),
    ("email 256", {"email": "a" * 246 + "@b.example"}, 40002, "email"),
    ("first_name 64", {"first_name": "x" * 64}, 40002, "first_name"),
    ("first_name empty", {"first_name": ""}, 40002, "first_name"),
    ("last_name 64", {"last_name": "x" * 64}, 40002, "last_name"),
    ("company 128", {"company": "x" * 128}, 40002, "company"),
    ("remark 1025", {"remark": "x" * 1025}, 40002, "remark"),
    ("zip_code 256", {"zip_code": "x" * 256}, 40002, "zip_code"),
    ("street 256", {"street": "x" * 256}, 40002, "street"),
    ("city 256", {"city": "x" * 256}, 40002, "city"),
    ("state 256", {"state": "x" * 256}, 40002, "state"),
    ("country 256", {"country": "x" * 256}, 40002, "country"),
    ("company not a string", {"company": None}, 40002, "company"),
    ("phonebook missing", {"phonebook_id_list": [1, 99]}, 70093, "99"),
    ("phonebook ids not ints", {"phonebook_id_list": ["1"]}, 40002, "phonebook_id_list"),
]


@pytest.fixture(scope="module")
def shared_api() -> Iterator[tuple[PbxSimulator, Api]]:
    sim = PbxSimulator(Dataset(5))
    with serve(sim) as api:
        yield sim, api


@pytest.mark.parametrize(
    ("fields", "code", "named"), [c[1:] for c in VALIDATION_CASES], ids=[c[0] for c in VALIDATION_CASES]
)
def test_validation_rules(
    shared_api: tuple[PbxSimulator, Api], fields: dict[str, Any], code: int, named: str
) -> None:
    sim, api = shared_api
    before = sim.contact(2)
    answer = api.post("company_contact/update", {"id": 2, **fields})
    assert answer["errcode"] == code and named in answer["errmsg"]
    assert sim.contact(2) == before
    create = {"first_name": "New", "number_list": numbers(("business_number", "100")), **fields}
    assert api.post("company_contact/create", create)["errcode"] == code
    with pytest.raises(PbxError) as raised:
        sim.edit_contact(2, **fields)
    assert raised.value.errcode == code


def test_validation_limits_are_inclusive() -> None:
    sim = PbxSimulator(Dataset(1))
    with serve(sim) as api:
        body: dict[str, Any] = {
            "id": 1,
            "first_name": "f" * 63,
            "last_name": "l" * 63,
            "company": "c" * 127,
            "remark": "r" * 1024,
            "email": "o'neil_x-y" + "a" * 235 + "@b.example",
            "zip_code": "z" * 255,
            "street": "s" * 255,
            "city": "c" * 255,
            "state": "s" * 255,
            "country": "c" * 255,
            "number_list": numbers(
                ("business_number", "1" * 31),
                ("business_number2", "(0)1.2-3+4*5#6"),
                ("mobile_number", "1-800-FLOWERS"),
                ("mobile_number2", "2"),
                ("home_number", "3"),
                ("home_number2", "4"),
                ("business_fax", "5"),
                ("home_fax", "6"),
                ("other_number", "7"),
            ),
        }
        assert len(body["email"]) == 255
        assert api.post("company_contact/update", body)["errcode"] == 0
        row = api.get("company_contact/list")["data"][0]
        assert row["contact_name"] == "f" * 63 + " " + "l" * 63
        assert (row["business"], row["other"]) == ("1" * 31, "7")


def test_seeded_contacts_satisfy_the_field_rules() -> None:
    sim = PbxSimulator(Dataset(500))
    for cid in range(1, 501):
        sim.edit_contact(cid, **seed_fields(sim.contact(cid)))


# --- firmware with job_title --------------------------------------------------------------------------


def test_job_title_only_with_newer_firmware() -> None:
    new = PbxSimulator(Dataset(2), firmware_job_title=True)
    with serve(new) as api:
        assert api.get("company_contact/list")["data"][0]["job_title"] == ""
        assert api.post("company_contact/update", {"id": 1, "job_title": "CTO"})["errcode"] == 0
        assert api.get("company_contact/list")["data"][0]["job_title"] == "CTO"
        assert api.get("company_contact/get", id=1)["data"]["job_title"] == "CTO"
        assert api.post("company_contact/update", {"id": 1, "job_title": "x" * 128})["errcode"] == 40002
    old = PbxSimulator(Dataset(2))
    with serve(old) as api:
        assert api.post("company_contact/update", {"id": 1, "job_title": "CTO"})["errcode"] == 0
        assert "job_title" not in api.get("company_contact/list")["data"][0]
        assert "job_title" not in old.contact(1)


# --- phonebooks ------------------------------------------------------------------------------------


def test_phonebooks() -> None:
    ds = Dataset(300)
    sim = PbxSimulator(ds)
    with serve(sim) as api:
        rows = api.get("company_contact/list")["data"]
        books = api.get("phonebook/list")
        assert books["total_number"] == len(ds.phonebooks)
        members = {
            p.id: [r["id"] for r in rows if p.id in [b["id"] for b in r["phonebook_list"]]]
            for p in ds.phonebooks
        }
        assert {b["id"]: b["total"] for b in books["data"]} == {k: len(v) for k, v in members.items()}
        assert {b["member_select"] for b in books["data"]} == {"sel_specific"}
        by_total = api.get("phonebook/list", sort_by="total", order_by="desc", page_size=2)
        assert len(by_total["data"]) == 2 and by_total["data"][0]["total"] >= by_total["data"][1]["total"]

        one = api.get("phonebook/get", id=2)["data"]
        assert (one["id"], one["name"], one["total"]) == (2, "Suppliers", len(members[2]))
        assert [c["id"] for c in one["contacts_list"]] == members[2]
        assert one["contacts_list"][0] == next(r for r in rows if r["id"] == members[2][0])
        assert api.get("phonebook/get", id=99)["errcode"] == 60001

        many = api.get("phonebook/query", ids="1,3,42")["data"]
        assert [(b["id"], b["total"]) for b in many] == [(1, len(members[1])), (3, len(members[3]))]

        # membership follows updates
        cid = members[2][0]
        assert api.post("company_contact/update", {"id": cid, "phonebook_id_list": []})["errcode"] == 0
        assert api.get("phonebook/get", id=2)["data"]["total"] == len(members[2]) - 1
        assert {b["id"]: b["total"] for b in api.get("phonebook/list")["data"]}[2] == len(members[2]) - 1


# --- a person edits the PBX ------------------------------------------------------------------------


def test_edits_outside_the_api_are_served() -> None:
    sim = PbxSimulator(Dataset(5))
    with serve(sim) as api:
        api.get("company_contact/list")  # warm the caches
        sim.edit_contact(3, email="new@corp.example", number_list=numbers(("other_number", "42")))
        row = api.get("company_contact/list")["data"][2]
        assert (row["email"], row["other"], row["business"]) == ("new@corp.example", "42", "")
        new_id = sim.add_contact(first_name="Ann", number_list=numbers(("mobile_number", "+15550100")))
        sim.delete_contact(1)
        ids = [r["id"] for r in api.get("company_contact/list")["data"]]
        assert ids == [2, 3, 4, 5, new_id]
        assert sim.contact_count() == 5
        assert sim.updates == []  # only API updates are recorded
    with pytest.raises(KeyError):
        sim.contact(1)
    with pytest.raises(KeyError):
        sim.edit_contact(1, remark="x")


# --- faults -----------------------------------------------------------------------------------------


def test_faults_reach_the_client() -> None:
    faults = Faults()
    sim = PbxSimulator(Dataset(3), faults=faults)
    with serve(sim) as api:
        faults.error_every = 2  # the login was call 1
        response = api.http.get("company_contact/list", params={"access_token": api.token})
        assert response.status_code == 503
        assert api.get("company_contact/list")["total_number"] == 3
        faults.reset()
        faults.drop_every = 1
        with pytest.raises(httpx.HTTPError):
            api.http.get("company_contact/list", params={"access_token": api.token})
        faults.reset()
        faults.html_every = 1
        response = api.http.get("company_contact/list", params={"access_token": api.token})
        assert response.status_code == 200 and "html" in response.headers["content-type"]
        faults.reset()
        assert api.get("company_contact/list")["total_number"] == 3
        assert faults.injected == {"error": 1, "drop": 1, "html": 1}


# --- switches for the behaviours the docs leave open --------------------------------------------------


def test_token_uses_makes_a_token_die_after_that_many_calls() -> None:
    sim = PbxSimulator(Dataset(3), token_uses=2)
    with serve(sim) as api:
        assert api.get("company_contact/get", id=1)["errcode"] == 0
        assert api.get("company_contact/get", id=2)["errcode"] == 0
        assert api.get("company_contact/get", id=3)["errcode"] == 10004
        assert sim.calls["company_contact/get"] == 3


def test_unavailable_every_answers_503_to_every_nth_call_of_that_endpoint() -> None:
    sim = PbxSimulator(Dataset(3))
    sim.unavailable_every = {"company_contact/get": 2}
    with SimServer(sim.app) as srv, httpx.Client(base_url=f"{srv.url}/openapi/v1.0/") as http:
        token = http.post("get_token", json=CREDS, headers={"User-Agent": "OpenAPI"}).json()["access_token"]
        statuses = [
            http.get(
                "company_contact/get", params={"id": 1, "access_token": token}, headers={"User-Agent": "x"}
            ).status_code
            for _ in range(4)
        ]
    assert statuses == [200, 503, 200, 503]
    assert sim.unavailable["company_contact/get"] == 2
    assert sim.calls["company_contact/get"] == 2  # the 503s never reached the API


@pytest.mark.parametrize(
    ("reading", "unknown", "by_ids", "by_id"),
    [
        ("both", "error", [1, 2], [1, 2]),
        ("ids", "error", [1, 2], 40002),
        ("ids", "ignore", [1, 2], []),
        ("id", "error", 40002, [1, 2]),
        ("id", "ignore", [], [1, 2]),
    ],
)
def test_query_param_readings(reading: str, unknown: str, by_ids: Any, by_id: Any) -> None:
    sim = PbxSimulator(Dataset(4), query_param=reading, unknown_query_param=unknown)
    with serve(sim) as api:
        for param, expected in (("ids", by_ids), ("id", by_id)):
            answer = api.get("company_contact/query", **{param: "1,2"})
            if isinstance(expected, int):
                assert answer["errcode"] == expected
            else:
                assert answer["errcode"] == 0
                assert [c["id"] for c in answer["data"]] == expected


@pytest.mark.parametrize("order", ["first_last", "last_first"])
def test_name_order_switches_the_listings_contact_name(order: str) -> None:
    sim = PbxSimulator(Dataset(3), name_order=order)
    with serve(sim) as api:
        listed = api.get("company_contact/list")["data"][0]
        detail = api.get("company_contact/get", id=listed["id"])["data"]
        sim.set_name_order("first_last")
        relisted = api.get("company_contact/list")["data"][0]
    first, last = detail["first_name"], detail["last_name"]
    assert listed["contact_name"] == (f"{last} {first}" if order == "last_first" else f"{first} {last}")
    assert relisted["contact_name"] == f"{first} {last}"


@pytest.mark.parametrize("refuse", [True, False])
def test_the_all_contacts_phonebook_lists_everyone_and_takes_no_members(refuse: bool) -> None:
    sim = PbxSimulator(Dataset(5))
    every = sim.all_contacts_phonebook(refuse_members=refuse)
    with serve(sim) as api:
        books = {b["id"]: b for b in api.get("phonebook/list")["data"]}
        assert books[every]["member_select"] == "sel_all" and books[every]["total"] == 5
        assert all(b["member_select"] == "sel_specific" for i, b in books.items() if i != every)
        assert api.get("phonebook/get", id=every)["data"]["total"] == 5
        for record in api.get("company_contact/list")["data"]:
            assert every in [p["id"] for p in record["phonebook_list"]]
        before = [p["id"] for p in sim.contact(1)["phonebook_list"]]
        answer = api.post("company_contact/update", {"id": 1, "phonebook_id_list": before})
        specific = [p for p in before if p != every]
        assert api.post("company_contact/update", {"id": 2, "phonebook_id_list": specific})["errcode"] == 0
    if refuse:
        assert answer["errcode"] == 40002 and str(every) in answer["errmsg"]
        assert sim.refused_members == 1
    else:
        assert answer["errcode"] == 0 and sim.refused_members == 0
    assert [p["id"] for p in sim.contact(1)["phonebook_list"]] == before


@pytest.mark.parametrize("errcode", [10005, 20002])
def test_login_refusal_errcode(errcode: int) -> None:
    sim = PbxSimulator(Dataset(2), login_refusal_errcode=errcode)
    with serve(sim, login=False) as api:
        assert api.login(username=CLIENT_ID, password="wrong")["errcode"] == errcode
        assert api.login()["errcode"] == 0


def test_denied_endpoints_answer_10005_to_a_valid_token() -> None:
    sim = PbxSimulator(Dataset(2))
    sim.denied = {"company_contact/update"}
    with serve(sim) as api:
        assert api.get("company_contact/list")["errcode"] == 0
        assert api.post("company_contact/update", {"id": 1, "email": "a@example.com"})["errcode"] == 10005
    assert sim.updates == []
