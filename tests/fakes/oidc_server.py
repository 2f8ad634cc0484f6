"""A fake OpenID Connect provider on 127.0.0.1: discovery, authorize (approves at once, as a
signed-in person who consents would), token (authorization code + PKCE S256, single-use codes),
JWKS with a real RSA key, userinfo.

`person` is who signs in next (sub, email, email_verified). `tamper` spoils the next ID tokens
in one way: "aud", "iss", "exp", "signature", "nonce" (a test's refusal case).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from tests.fakes.base import JSONHandler, LoopbackServer


class _Handler(JSONHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        fake: FakeOIDC = self.fake
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        fake.requests.append(("GET", url.path, query))
        if url.path == "/.well-known/openid-configuration":
            self.send_json(200, fake.discovery())
        elif url.path == "/jwks":
            self.send_json(200, fake.keys.as_dict(private=False))
        elif url.path == "/authorize":
            self.authorize(fake, query)
        elif url.path == "/userinfo":
            token = self.headers.get("authorization", "").removeprefix("Bearer ")
            claims = fake.access_tokens.get(token)
            if claims is None:
                self.send_json(401, {"error": "invalid_token"})
            else:
                self.send_json(200, claims)
        else:
            self.send_json(404, {"error": "not_found"})

    def authorize(self, fake: FakeOIDC, query: dict) -> None:
        problems = []
        if query.get("client_id") != fake.client_id:
            problems.append("client_id")
        if query.get("response_type") != "code":
            problems.append("response_type")
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            problems.append("pkce")
        if "openid" not in query.get("scope", "").split():
            problems.append("scope")
        if not query.get("state") or not query.get("nonce"):
            problems.append("state/nonce")
        if problems:
            self.send_json(400, {"error": "invalid_request", "problems": problems})
            return
        code = secrets.token_urlsafe(24)
        with fake.lock:
            fake.codes[code] = {"person": dict(fake.person), "nonce": query["nonce"],
                                "challenge": query["code_challenge"], "redirect_uri": query["redirect_uri"]}
        target = query["redirect_uri"] + "?" + urlencode({"code": code, "state": query["state"]})
        self.send_response(302)
        self.send_header("location", target)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_POST(self) -> None:  # noqa: N802
        fake: FakeOIDC = self.fake
        url = urlsplit(self.path)
        form = {k: v[0] for k, v in parse_qs(self.read_body().decode()).items()}
        fake.requests.append(("POST", url.path, form))
        if url.path != "/token":
            self.send_json(404, {"error": "not_found"})
            return
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        scheme, _, basic = self.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            client_id, _, client_secret = base64.b64decode(basic).decode().partition(":")
            fake.auth_methods.append("client_secret_basic")
        else:
            fake.auth_methods.append("client_secret_post")
        if client_id != fake.client_id or client_secret != fake.client_secret:
            self.send_json(401, {"error": "invalid_client"})
            return
        with fake.lock:
            grant = fake.codes.get(form.get("code", ""))
            if grant is None or grant.get("used"):
                self.send_json(400, {"error": "invalid_grant", "error_description": "code unknown or used"})
                return
            grant["used"] = True
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if challenge != grant["challenge"] or form.get("redirect_uri") != grant["redirect_uri"]:
            self.send_json(400, {"error": "invalid_grant", "error_description": "PKCE or redirect_uri mismatch"})
            return
        access = secrets.token_urlsafe(24)
        person = grant["person"]
        fake.access_tokens[access] = {"sub": person["sub"], **{k: person[k] for k in ("email", "email_verified")
                                                                if k in person}}
        self.send_json(200, {"access_token": access, "token_type": "Bearer", "expires_in": 3600,
                             "id_token": fake.id_token(person, grant["nonce"])})


class FakeOIDC(LoopbackServer):
    handler = _Handler

    def __init__(self, *, client_id: str = "studio-client", client_secret: str = "studio-secret"):
        self.client_id, self.client_secret = client_id, client_secret
        self.key = RSAKey.generate_key(2048, parameters={"kid": "fake-1", "use": "sig", "alg": "RS256"})
        self.keys = KeySet([self.key])
        self.person: dict = {"sub": "user-1", "email": "person@example.com", "email_verified": True}
        self.tamper: str | None = None
        self.include_email_in_id_token = True
        self.codes: dict[str, dict] = {}
        self.access_tokens: dict[str, dict] = {}
        self.requests: list[tuple] = []
        self.auth_methods: list[str] = []  # how the client authenticated at each token request
        self.token_auth_methods = ["client_secret_post", "client_secret_basic"]
        self.lock = threading.Lock()

    @property
    def issuer(self) -> str:
        return f"http://{self.host}:{self.port}"

    def discovery(self) -> dict:
        base = self.issuer
        return {"issuer": base, "authorization_endpoint": f"{base}/authorize", "token_endpoint": f"{base}/token",
                "jwks_uri": f"{base}/jwks", "userinfo_endpoint": f"{base}/userinfo",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["openid", "email", "profile"],
                "token_endpoint_auth_methods_supported": self.token_auth_methods}

    def id_token(self, person: dict, nonce: str) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": person["sub"], "aud": self.client_id, "iat": now, "exp": now + 300,
                  "nonce": nonce}
        if self.include_email_in_id_token:
            claims.update({k: person[k] for k in ("email", "email_verified", "name") if k in person})
        key = self.key
        if self.tamper == "aud":
            claims["aud"] = "someone-else"
        elif self.tamper == "iss":
            claims["iss"] = "http://127.0.0.1:1/not-the-issuer"
        elif self.tamper == "exp":
            claims["iat"], claims["exp"] = now - 3600, now - 600
        elif self.tamper == "nonce":
            claims["nonce"] = "not-the-nonce"
        elif self.tamper == "signature":
            # Same key id, another private key: the signature cannot verify with the published key.
            key = RSAKey.generate_key(2048, parameters={"kid": "fake-1", "use": "sig", "alg": "RS256"})
        return jwt.encode({"alg": "RS256", "kid": "fake-1"}, claims, key)
