"""A small fake of Stripe's API on 127.0.0.1, spoken to by the real `stripe` SDK.

It decodes Stripe's form encoding (`metadata[user_id]=1`, `line_items[0][price]=...`), keeps
objects in memory, honours Idempotency-Key (a replay returns the first answer; other params →
idempotency_error), refuses what real Stripe refuses where our code could get it wrong
(unknown prices, one-time prices in subscription mode, `customer` with `customer_email`), and
records every request. Test helpers play the customer's side: complete a checkout, renew,
change plan, cancel, refund, and build webhook events with their signatures.

    with FakeStripe() as fake:
        client = stripe.StripeClient("sk_test_x", base_addresses={"api": fake.url})
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

import stripe

from tests.fakes.base import JSONHandler, LoopbackServer

MONTH = 30 * 24 * 3600
YEAR = 365 * 24 * 3600
_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}_test_{next(_ids):06d}{uuid.uuid4().hex[:10]}"


def decode_form(pairs: list[tuple[str, str]]) -> dict:
    """Stripe's bracket form encoding → nested dicts and lists."""
    root: dict = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _listify(root)


def _listify(node):
    if not isinstance(node, dict):
        return node
    node = {k: _listify(v) for k, v in node.items()}
    if node and all(k.isdigit() for k in node):
        return [node[k] for k in sorted(node, key=int)]
    return node


def signed(event: dict, secret: str, *, timestamp: int | None = None) -> tuple[bytes, str]:
    """(raw body, Stripe-Signature header) as Stripe would deliver the event."""
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(
        payload, secret, timestamp=int(time.time()) if timestamp is None else timestamp
    )
    return payload.encode(), header


@dataclass
class Recorded:
    method: str
    path: str
    params: dict
    headers: dict[str, str]

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


class StripeApiError(Exception):
    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": type_, "message": message, "code": code, "param": param}}


def _missing(kind: str, id_: str) -> StripeApiError:
    return StripeApiError(404, f"No such {kind}: '{id_}'", code="resource_missing", param="id")


@dataclass
class _Failure:
    prefix: str
    status: int
    remaining: int


@dataclass
class FakeStripe(LoopbackServer):
    api_key_prefix: str = "sk_test_"
    requests: list[Recorded] = field(default_factory=list)
    customers: dict[str, dict] = field(default_factory=dict)
    products: dict[str, dict] = field(default_factory=dict)
    prices: dict[str, dict] = field(default_factory=dict)
    sessions: dict[str, dict] = field(default_factory=dict)
    line_items: dict[str, list[dict]] = field(default_factory=dict)
    subscriptions: dict[str, dict] = field(default_factory=dict)
    invoices: dict[str, dict] = field(default_factory=dict)
    charges: dict[str, dict] = field(default_factory=dict)
    portal_sessions: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self):
        self._lock = threading.RLock()
        self._idempotency: dict[str, tuple[str, str, dict, int, dict]] = {}
        self._session_params: dict[str, dict] = {}
        self._failures: list[_Failure] = []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # Test controls ------------------------------------------------------------------------------

    def fail_next(self, path_prefix: str = "/v1/", *, status: int = 500, times: int = 1) -> None:
        """Answer the next `times` requests under path_prefix with `status` (recorded, not processed)."""
        with self._lock:
            self._failures.append(_Failure(path_prefix, status, times))

    def requests_to(self, method: str, path_prefix: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    # Dispatch ------------------------------------------------------------------------------------

    def dispatch(self, method: str, raw_path: str, body: str, headers: dict) -> tuple[int, dict]:
        split = urlsplit(raw_path)
        path = split.path
        params = decode_form(parse_qsl(body if method == "POST" else split.query, keep_blank_values=True))
        lowered = {k.lower(): v for k, v in headers.items()}
        with self._lock:
            self.requests.append(Recorded(method, path, params, lowered))
            auth = lowered.get("authorization", "")
            if not auth.startswith("Bearer " + self.api_key_prefix):
                return 401, StripeApiError(401, "Invalid API Key provided").body
            for failure in self._failures:
                if failure.remaining > 0 and path.startswith(failure.prefix):
                    failure.remaining -= 1
                    return failure.status, StripeApiError(failure.status, "Injected failure", type_="api_error").body
            key = lowered.get("idempotency-key")
            if method == "POST" and key:
                cached = self._idempotency.get(key)
                if cached:
                    c_method, c_path, c_params, c_status, c_body = cached
                    if (c_method, c_path, c_params) != (method, path, params):
                        return 400, StripeApiError(
                            400, "Keys for idempotent requests can only be used with the same parameters",
                            type_="idempotency_error").body
                    return c_status, copy.deepcopy(c_body)
            try:
                status, result = 200, self._route(method, path, params)
            except StripeApiError as err:
                status, result = err.status, err.body
            if method == "POST" and key:
                self._idempotency[key] = (method, path, params, status, copy.deepcopy(result))
            return status, copy.deepcopy(result)

    def _route(self, method: str, path: str, p: dict) -> dict:
        parts = path.strip("/").split("/")
        if parts[0] != "v1":
            raise StripeApiError(404, f"Unrecognized request URL ({method}: {path})")
        parts = parts[1:]
        match method, parts:
            case "POST", ["checkout", "sessions"]:
                return self._create_session(p)
            case "GET", ["checkout", "sessions"]:
                found = [s for s in self.sessions.values()
                         if all(s.get(k) == v for k, v in p.items() if k in ("payment_intent", "subscription", "customer"))]
                return self._list(found, path)
            case "GET", ["checkout", "sessions", sid]:
                return self._session_view(sid, p)
            case "GET", ["checkout", "sessions", sid, "line_items"]:
                self._get(self.sessions, sid, "checkout.session")
                return self._list(self.line_items[sid], path)
            case "POST", ["billing_portal", "sessions"]:
                return self._create_portal(p)
            case "GET", ["subscriptions", sid]:
                return self._get(self.subscriptions, sid, "subscription")
            case "GET", ["invoices", iid]:
                return self._get(self.invoices, iid, "invoice")
            case "GET", ["charges", cid]:
                return self._get(self.charges, cid, "charge")
            case "POST", ["customers"]:
                return self.create_customer(email=p.get("email"), metadata=p.get("metadata") or {})
            case "GET", ["customers", cid]:
                return self._get(self.customers, cid, "customer")
            case "POST", ["products"]:
                return self._create_product(p)
            case "GET", ["products"]:
                return self._list(list(self.products.values()), path)
            case "GET", ["products", "search"]:
                return self._search(self.products.values(), p.get("query", ""), path)
            case "GET", ["products", pid]:
                return self._get(self.products, pid, "product")
            case "POST", ["prices"]:
                return self._create_price(p)
            case "GET", ["prices"]:
                return self._list_prices(p, path)
            case "GET", ["prices", "search"]:
                return self._search(self.prices.values(), p.get("query", ""), path)
            case "GET", ["prices", pid]:
                return self._get(self.prices, pid, "price")
            case "POST", ["prices", pid]:
                price = self._get(self.prices, pid, "price")
                for k in ("active", "nickname", "lookup_key"):
                    if k in p:
                        price[k] = (p[k] == "true") if k == "active" else p[k]
                if "metadata" in p:
                    price["metadata"].update(p["metadata"])
                return price
        raise StripeApiError(404, f"Unrecognized request URL ({method}: {path})")

    # Helpers ----------------------------------------------------------------------------------

    @staticmethod
    def _list(items: list[dict], url: str) -> dict:
        return {"object": "list", "data": list(items), "has_more": False, "url": url}

    @staticmethod
    def _get(store: dict, id_: str, kind: str) -> dict:
        if id_ not in store:
            raise _missing(kind, id_)
        return store[id_]

    def _search(self, items, query: str, url: str) -> dict:
        clauses = re.findall(r"(\w+)(?:\['([^']+)'\])?:'([^']*)'", query)
        if not clauses:
            raise StripeApiError(400, f"Invalid search query: {query!r}", param="query")

        def hit(obj: dict) -> bool:
            for name, sub, value in clauses:
                actual = obj.get("metadata", {}).get(sub) if name == "metadata" else obj.get(name)
                if isinstance(actual, bool):
                    actual = str(actual).lower()
                if actual != value:
                    return False
            return True

        return {"object": "search_result", "data": [o for o in items if hit(o)], "has_more": False,
                "next_page": None, "url": url}

    def _list_prices(self, p: dict, url: str) -> dict:
        found = list(self.prices.values())
        if "lookup_keys" in p:
            keys = p["lookup_keys"] if isinstance(p["lookup_keys"], list) else [p["lookup_keys"]]
            if len(keys) > 10:
                raise StripeApiError(400, "lookup_keys: at most 10", param="lookup_keys")
            found = [x for x in found if x["lookup_key"] in keys]
        if "active" in p:
            found = [x for x in found if x["active"] == (p["active"] == "true")]
        if "product" in p:
            found = [x for x in found if x["product"] == p["product"]]
        return self._list(found, url)

    # Catalog objects -------------------------------------------------------------------------------

    def create_customer(self, *, email: str | None = None, metadata: dict | None = None) -> dict:
        cid = new_id("cus")
        self.customers[cid] = {"id": cid, "object": "customer", "email": email, "metadata": metadata or {},
                               "created": int(time.time()), "livemode": False}
        return self.customers[cid]

    def _create_product(self, p: dict) -> dict:
        pid = p.get("id") or new_id("prod")
        if pid in self.products:
            raise StripeApiError(400, f"Product already exists: {pid}", code="resource_already_exists", param="id")
        if not p.get("name"):
            raise StripeApiError(400, "Missing required param: name.", code="parameter_missing", param="name")
        self.products[pid] = {"id": pid, "object": "product", "name": p["name"], "description": p.get("description"),
                              "active": True, "metadata": p.get("metadata") or {}, "created": int(time.time()),
                              "livemode": False}
        return self.products[pid]

    def _create_price(self, p: dict) -> dict:
        if p.get("product") not in self.products:
            raise _missing("product", str(p.get("product")))
        try:
            unit_amount = int(p["unit_amount"])
        except (KeyError, ValueError):
            raise StripeApiError(400, "unit_amount must be an integer", param="unit_amount") from None
        lookup_key = p.get("lookup_key")
        holder = next((x for x in self.prices.values() if lookup_key and x["lookup_key"] == lookup_key), None)
        if holder is not None:
            if p.get("transfer_lookup_key") != "true":
                raise StripeApiError(400, f"A price with lookup_key {lookup_key} already exists",
                                     param="lookup_key")
            holder["lookup_key"] = None
        recurring = p.get("recurring")
        if recurring is not None:
            if recurring.get("interval") not in ("day", "week", "month", "year"):
                raise StripeApiError(400, "Invalid recurring[interval]", param="recurring[interval]")
            recurring = {"interval": recurring["interval"], "interval_count": int(recurring.get("interval_count", 1)),
                         "usage_type": "licensed", "meter": None, "trial_period_days": None}
        return self.add_price(product=p["product"], unit_amount=unit_amount, currency=p.get("currency", "usd"),
                              lookup_key=lookup_key, recurring=recurring, metadata=p.get("metadata") or {},
                              nickname=p.get("nickname"))

    def add_price(self, *, product: str, unit_amount: int, currency: str = "usd", lookup_key: str | None = None,
                  recurring: dict | None = None, metadata: dict | None = None, nickname: str | None = None) -> dict:
        """Put a price (and its product, if new) straight into the fake account."""
        if product not in self.products:
            self.products[product] = {"id": product, "object": "product", "name": product, "description": None,
                                      "active": True, "metadata": {}, "created": int(time.time()), "livemode": False}
        pid = new_id("price")
        if recurring is not None and "interval_count" not in recurring:
            recurring = {"interval_count": 1, "usage_type": "licensed", **recurring}
        self.prices[pid] = {
            "id": pid, "object": "price", "active": True, "currency": currency, "unit_amount": unit_amount,
            "unit_amount_decimal": str(unit_amount), "lookup_key": lookup_key, "product": product,
            "recurring": recurring, "type": "recurring" if recurring else "one_time", "metadata": metadata or {},
            "nickname": nickname, "billing_scheme": "per_unit", "created": int(time.time()), "livemode": False,
        }
        return self.prices[pid]

    # Checkout ----------------------------------------------------------------------------------------

    def _create_session(self, p: dict) -> dict:
        mode = p.get("mode")
        if mode not in ("payment", "subscription", "setup"):
            raise StripeApiError(400, "Missing required param: mode.", code="parameter_missing", param="mode")
        if not p.get("success_url") and p.get("ui_mode", "hosted") == "hosted":
            raise StripeApiError(400, "Missing required param: success_url.", param="success_url")
        if p.get("customer") and p.get("customer_email"):
            raise StripeApiError(400, "You may only specify one of these parameters: customer, customer_email.",
                                 param="customer_email")
        if p.get("customer") and p["customer"] not in self.customers:
            raise _missing("customer", p["customer"])
        if "customer_creation" in p and mode != "payment":
            raise StripeApiError(400, "customer_creation can only be used in payment mode.",
                                 param="customer_creation")
        if "subscription_data" in p and mode != "subscription":
            raise StripeApiError(400, "subscription_data can only be used in subscription mode.",
                                 param="subscription_data")
        methods = p.get("payment_method_types") or []
        unknown = [m for m in methods if m not in ("card", "alipay", "wechat_pay", "link", "us_bank_account")]
        if unknown:
            raise StripeApiError(400, f"Invalid payment_method_types: {unknown[0]}", param="payment_method_types")
        if mode == "subscription" and {"alipay", "wechat_pay"} & set(methods):
            raise StripeApiError(400, "The payment method `wechat_pay` or `alipay` cannot be used in subscription "
                                 "mode.", param="payment_method_types")
        if "wechat_pay" in methods and ((p.get("payment_method_options") or {}).get("wechat_pay") or {}).get(
                "client") not in ("web", "ios", "android"):
            raise StripeApiError(400, "payment_method_options[wechat_pay][client] is required for wechat_pay.",
                                 param="payment_method_options[wechat_pay][client]")
        items = []
        for i, li in enumerate(p.get("line_items") or []):
            price = self.prices.get(li.get("price"))
            if price is None:
                raise _missing("price", str(li.get("price")))
            if not price["active"]:
                raise StripeApiError(400, f"The price {price['id']} is not active.", param=f"line_items[{i}][price]")
            if (mode == "subscription") != (price["type"] == "recurring"):
                raise StripeApiError(400, f"line_items[{i}]: price type {price['type']} does not fit mode {mode}",
                                     param=f"line_items[{i}][price]")
            qty = int(li.get("quantity", 1))
            items.append({"id": new_id("li"), "object": "item", "amount_subtotal": price["unit_amount"] * qty,
                          "amount_total": price["unit_amount"] * qty, "currency": price["currency"],
                          "description": self.products[price["product"]]["name"], "quantity": qty,
                          "price": copy.deepcopy(price)})
        if not items:
            raise StripeApiError(400, "Missing required param: line_items.", param="line_items")
        sid = new_id("cs")
        now = int(time.time())
        session = {
            "id": sid, "object": "checkout.session", "mode": mode, "status": "open", "payment_status": "unpaid",
            "url": f"{self.url}/pay/{sid}", "success_url": p.get("success_url"), "cancel_url": p.get("cancel_url"),
            "client_reference_id": p.get("client_reference_id"), "customer": p.get("customer"),
            "customer_email": p.get("customer_email"), "customer_details": None,
            "metadata": p.get("metadata") or {}, "amount_subtotal": sum(i["amount_total"] for i in items),
            "amount_total": sum(i["amount_total"] for i in items), "currency": items[0]["currency"],
            "subscription": None, "invoice": None, "payment_intent": None, "created": now,
            "expires_at": now + 24 * 3600, "livemode": False,
            "payment_method_types": list(methods) or ["card"],
        }
        self.sessions[sid] = session
        self.line_items[sid] = items
        self._session_params[sid] = p
        return session

    def _session_view(self, sid: str, p: dict) -> dict:
        session = copy.deepcopy(self._get(self.sessions, sid, "checkout.session"))
        expand = p.get("expand") or []
        if "line_items" in expand:
            session["line_items"] = self._list(self.line_items[sid], f"/v1/checkout/sessions/{sid}/line_items")
        return session

    def _create_portal(self, p: dict) -> dict:
        customer = p.get("customer")
        if not customer:
            raise StripeApiError(400, "Missing required param: customer.", param="customer")
        if customer not in self.customers:
            raise _missing("customer", customer)
        bid = new_id("bps")
        self.portal_sessions[bid] = {"id": bid, "object": "billing_portal.session", "customer": customer,
                                     "return_url": p.get("return_url"), "url": f"{self.url}/portal/{bid}",
                                     "created": int(time.time()), "livemode": False}
        return self.portal_sessions[bid]

    # The customer's side (test helpers) --------------------------------------------------------------

    def complete_checkout(self, session_id: str, *, payment_status: str = "paid") -> dict:
        """The customer pays on the hosted page. Returns the completed session."""
        with self._lock:
            session = self.sessions[session_id]
            params = self._session_params[session_id]
            if session["customer"] is None and (
                session["mode"] == "subscription" or params.get("customer_creation") == "always"
            ):
                session["customer"] = self.create_customer(email=session["customer_email"])["id"]
            session["status"] = "complete"
            session["payment_status"] = payment_status
            session["customer_details"] = {"email": session["customer_email"]}
            if session["mode"] == "payment":
                session["payment_intent"] = new_id("pi")
            elif session["mode"] == "subscription":
                price = self.line_items[session_id][0]["price"]
                metadata = (params.get("subscription_data") or {}).get("metadata") or {}
                sub = self._new_subscription(session["customer"], price, metadata)
                invoice = self._new_invoice(sub, "subscription_create",
                                            paid=payment_status in ("paid", "no_payment_required"))
                session["subscription"] = sub["id"]
                session["invoice"] = invoice["id"]
            return copy.deepcopy(session)

    def _new_subscription(self, customer: str, price: dict, metadata: dict) -> dict:
        now = int(time.time())
        sid = new_id("sub")
        self.subscriptions[sid] = {
            "id": sid, "object": "subscription", "customer": customer, "status": "active",
            "cancel_at_period_end": False, "cancel_at": None, "canceled_at": None, "ended_at": None,
            "metadata": dict(metadata), "created": now, "start_date": now, "latest_invoice": None,
            "livemode": False,
            "items": self._list([{
                "id": new_id("si"), "object": "subscription_item", "price": copy.deepcopy(price), "quantity": 1,
                "subscription": sid, "current_period_start": now,
                "current_period_end": now + self._period(price),
            }], f"/v1/subscription_items?subscription={sid}"),
        }
        return self.subscriptions[sid]

    @staticmethod
    def _period(price: dict) -> int:
        return YEAR if (price.get("recurring") or {}).get("interval") == "year" else MONTH

    def _new_invoice(self, sub: dict, billing_reason: str, *, paid: bool = True,
                     proration_lines: list[dict] | None = None) -> dict:
        item = sub["items"]["data"][0]
        price = item["price"]
        iid = new_id("in")
        now = int(time.time())
        # A renewal invoice's own period is the one that just ended; a first invoice's is a point.
        usage_start = now if billing_reason == "subscription_create" else item["current_period_start"] - self._period(price)
        line = {
            "id": new_id("il"), "object": "line_item", "amount": price["unit_amount"], "currency": price["currency"],
            "description": f"1 × {price['product']}", "invoice": iid, "livemode": False, "metadata": {},
            "period": {"start": item["current_period_start"], "end": item["current_period_end"]},
            "pricing": {"type": "price_details", "price_details": {"price": price["id"], "product": price["product"]},
                        "unit_amount_decimal": str(price["unit_amount"])},
            "parent": {"type": "subscription_item_details", "invoice_item_details": None,
                       "subscription_item_details": {"subscription": sub["id"], "subscription_item": item["id"],
                                                     "proration": False, "proration_details": {"credited_items": None},
                                                     "invoice_item": None}},
            "quantity": 1, "subtotal": price["unit_amount"],
        }
        lines = (proration_lines or []) + [line]
        total = sum(x["amount"] for x in lines)
        self.invoices[iid] = {
            "id": iid, "object": "invoice", "customer": sub["customer"], "status": "paid" if paid else "open",
            "billing_reason": billing_reason, "amount_due": total, "amount_paid": total if paid else 0,
            "currency": price["currency"], "created": now, "period_start": usage_start,
            "period_end": now if billing_reason == "subscription_create" else item["current_period_start"],
            "parent": {"type": "subscription_details", "quote_details": None,
                       "subscription_details": {"subscription": sub["id"], "metadata": dict(sub["metadata"])}},
            "lines": self._list(lines, f"/v1/invoices/{iid}/lines"), "livemode": False,
        }
        sub["latest_invoice"] = iid
        return self.invoices[iid]

    def renew(self, subscription_id: str) -> dict:
        """The next billing cycle starts: advance the period and issue a paid subscription_cycle invoice."""
        with self._lock:
            sub = self.subscriptions[subscription_id]
            item = sub["items"]["data"][0]
            item["current_period_start"] = item["current_period_end"]
            item["current_period_end"] = item["current_period_start"] + self._period(item["price"])
            return copy.deepcopy(self._new_invoice(sub, "subscription_cycle"))

    def change_price(self, subscription_id: str, price_id: str) -> dict:
        """Switch the plan (as the Customer Portal does), effective from the next invoice."""
        with self._lock:
            sub = self.subscriptions[subscription_id]
            sub["items"]["data"][0]["price"] = copy.deepcopy(self.prices[price_id])
            return copy.deepcopy(sub)

    def switch_interval(self, subscription_id: str, price_id: str) -> dict:
        """Switch to a price with another interval: the cycle restarts now and the new period is
        invoiced at once (billing_reason subscription_update, with a proration credit line)."""
        with self._lock:
            sub = self.subscriptions[subscription_id]
            item = sub["items"]["data"][0]
            old = item["price"]
            credit = {
                "id": new_id("il"), "object": "line_item", "amount": -old["unit_amount"] // 2,
                "currency": old["currency"], "description": "Unused time", "metadata": {},
                "period": {"start": int(time.time()), "end": item["current_period_end"]},
                "pricing": {"type": "price_details", "price_details": {"price": old["id"], "product": old["product"]},
                            "unit_amount_decimal": str(old["unit_amount"])},
                "parent": {"type": "subscription_item_details", "invoice_item_details": None,
                           "subscription_item_details": {"subscription": sub["id"], "subscription_item": item["id"],
                                                         "proration": True, "proration_details": None,
                                                         "invoice_item": new_id("ii")}},
                "quantity": 1,
            }
            item["price"] = copy.deepcopy(self.prices[price_id])
            item["current_period_start"] = int(time.time())
            item["current_period_end"] = item["current_period_start"] + self._period(item["price"])
            return copy.deepcopy(self._new_invoice(sub, "subscription_update", proration_lines=[credit]))

    def cancel(self, subscription_id: str, *, at_period_end: bool = False) -> dict:
        with self._lock:
            sub = self.subscriptions[subscription_id]
            if at_period_end:
                sub["cancel_at_period_end"] = True
                sub["cancel_at"] = sub["items"]["data"][0]["current_period_end"]
            else:
                sub["status"] = "canceled"
                sub["canceled_at"] = sub["ended_at"] = int(time.time())
            return copy.deepcopy(sub)

    def refund(self, payment_intent: str, *, amount: int | None = None) -> dict:
        """Refund (part of) the charge of a payment intent; returns the charge after the refund."""
        with self._lock:
            charge = next((c for c in self.charges.values() if c["payment_intent"] == payment_intent), None)
            if charge is None:
                session = next(s for s in self.sessions.values() if s["payment_intent"] == payment_intent)
                cid = new_id("ch")
                charge = self.charges[cid] = {
                    "id": cid, "object": "charge", "amount": session["amount_total"], "amount_refunded": 0,
                    "refunded": False, "currency": session["currency"], "customer": session["customer"],
                    "payment_intent": payment_intent, "paid": True, "status": "succeeded", "livemode": False,
                }
            charge["amount_refunded"] = min(charge["amount"], charge["amount_refunded"] + (amount or charge["amount"]))
            charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
            return copy.deepcopy(charge)

    # Webhook events -----------------------------------------------------------------------------------

    @staticmethod
    def event(type_: str, obj: dict, *, event_id: str | None = None) -> dict:
        return {
            "id": event_id or new_id("evt"), "object": "event", "api_version": stripe.api_version,
            "created": int(time.time()), "type": type_, "livemode": False, "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None}, "data": {"object": copy.deepcopy(obj)},
        }


class _Handler(JSONHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        body = self.read_body().decode()
        status, payload = self.fake.dispatch(method, self.path, body, dict(self.headers.items()))
        self.send_json(status, payload, {"Request-Id": "req_" + uuid.uuid4().hex[:14]})


FakeStripe.handler = _Handler
