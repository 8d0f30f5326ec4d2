"""The OAuth2 token cache."""

from __future__ import annotations

import anyio
import pytest
from pydantic import SecretStr

from carrier_adapters.auth import IssuedToken, TokenCache, parse_token_response
from carrier_adapters.base import MalformedCarrierResponse
from tests.clock import FakeClock


class _Issuer:
    def __init__(self, lifetime_s: float = 3600) -> None:
        self.issued = 0
        self.lifetime_s = lifetime_s

    async def __call__(self) -> IssuedToken:
        self.issued += 1
        # Yield so that concurrent callers really overlap.
        await anyio.sleep(0)
        return IssuedToken(SecretStr(f"token-{self.issued}"), self.lifetime_s)


@pytest.mark.anyio
class TestTokenCache:
    async def test_token_is_reused_until_shortly_before_expiry(self, clock: FakeClock) -> None:
        issuer = _Issuer(3600)
        cache = TokenCache(issuer, clock=clock, refresh_margin_s=60)
        assert await cache.get() == "token-1"
        clock.advance(3539)
        assert await cache.get() == "token-1"
        clock.advance(1)
        assert await cache.get() == "token-2"

    async def test_short_lived_tokens_are_kept_for_half_their_life(self, clock: FakeClock) -> None:
        issuer = _Issuer(60)
        cache = TokenCache(issuer, clock=clock, refresh_margin_s=60)
        await cache.get()
        clock.advance(29)
        assert await cache.get() == "token-1"
        clock.advance(1)
        assert await cache.get() == "token-2"

    async def test_invalidate_drops_only_the_failed_token(self, clock: FakeClock) -> None:
        cache = TokenCache(_Issuer(), clock=clock)
        first = await cache.get()
        cache.invalidate(first)
        second = await cache.get()
        assert second == "token-2"
        cache.invalidate(first)
        assert await cache.get() == "token-2"

    async def test_concurrent_callers_share_one_fetch(self, clock: FakeClock) -> None:
        issuer = _Issuer()
        cache = TokenCache(issuer, clock=clock)
        tokens: list[str] = []

        async def take() -> None:
            tokens.append(await cache.get())

        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(take)
        assert tokens == ["token-1"] * 5
        assert issuer.issued == 1

    async def test_repr_never_shows_the_token(self, clock: FakeClock) -> None:
        cache = TokenCache(_Issuer(), clock=clock)
        await cache.get()
        assert "token-1" not in repr(cache)


@pytest.mark.parametrize(
    "body",
    [
        {"access_token": "abc", "expires_in": 3599},
        {"access_token": "abc", "expires_in": "14399", "token_type": "Bearer"},
    ],
)
def test_token_responses_with_numeric_or_string_lifetimes(body: object) -> None:
    issued = parse_token_response(body, "acme")
    assert issued.access_token.get_secret_value() == "abc"
    assert issued.expires_in_s in (3599.0, 14399.0)


@pytest.mark.parametrize(
    "body",
    [{}, {"access_token": "", "expires_in": 10}, {"access_token": "x"}, ["access_token"], None],
)
def test_malformed_token_responses_are_refused(body: object) -> None:
    with pytest.raises(MalformedCarrierResponse):
        parse_token_response(body, "acme")
