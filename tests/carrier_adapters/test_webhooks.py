"""Verification of inbound carrier pushes."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from carrier_adapters.webhooks import (
    fedex_signature,
    verify_bearer_credential,
    verify_fedex_signature,
    verify_static_token,
)
from tests.carrier_adapters.helpers import fixture_bytes

SECRET = "fedex-webhook-security-code"


class TestFedexSignature:
    body = fixture_bytes("fedex", "track_reply_delivered.json")

    def test_signature_is_base64_hmac_sha256_of_the_raw_body(self) -> None:
        expected = base64.b64encode(
            hmac.new(SECRET.encode(), self.body, hashlib.sha256).digest()
        ).decode()
        assert fedex_signature(self.body, SECRET) == expected

    def test_valid_signature_is_accepted(self) -> None:
        assert verify_fedex_signature(self.body, fedex_signature(self.body, SECRET), SECRET)

    def test_altered_body_is_refused(self) -> None:
        signature = fedex_signature(self.body, SECRET)
        altered = self.body.replace(b'"DL"', b'"DE"', 1)
        assert altered != self.body
        assert not verify_fedex_signature(altered, signature, SECRET)

    def test_wrong_secret_is_refused(self) -> None:
        signature = fedex_signature(self.body, "another-secret")
        assert not verify_fedex_signature(self.body, signature, SECRET)

    @pytest.mark.parametrize("signature", [None, "", "not base64 at all", "AAAA"])
    def test_missing_or_garbage_signature_is_refused(self, signature: str | None) -> None:
        assert not verify_fedex_signature(self.body, signature, SECRET)

    def test_empty_secret_never_verifies(self) -> None:
        assert not verify_fedex_signature(self.body, fedex_signature(self.body, ""), "")


class TestBearerCredential:
    def test_matching_bearer_is_accepted(self) -> None:
        assert verify_bearer_credential("Bearer s3cr3t-credential", "s3cr3t-credential")
        assert verify_bearer_credential("bearer  s3cr3t-credential ", "s3cr3t-credential")

    @pytest.mark.parametrize(
        "header",
        [None, "", "Bearer", "Bearer wrong", "Basic s3cr3t-credential", "s3cr3t-credential"],
    )
    def test_anything_else_is_refused(self, header: str | None) -> None:
        assert not verify_bearer_credential(header, "s3cr3t-credential")


class TestStaticToken:
    def test_matching_token_is_accepted(self) -> None:
        assert verify_static_token("dhl-push-token", "dhl-push-token")

    @pytest.mark.parametrize("value", [None, "", "dhl-push-token-2", "DHL-PUSH-TOKEN"])
    def test_anything_else_is_refused(self, value: str | None) -> None:
        assert not verify_static_token(value, "dhl-push-token")
