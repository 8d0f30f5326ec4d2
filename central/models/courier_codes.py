"""Courier code hashes as the nodes get them, made once per carrier, bank and day for every host."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from central.models.base import Base, UtcDateTime


class StoredCourierCode(Base):
    """A carrier's courier code for one bank and local day, as scrypt with a random salt.

    Never the code itself: central derives that from its service key when it needs it. The
    hash is what every node of the bank is sent anyway; keeping it here means it is made once
    for all web workers and hosts (scrypt costs ~30 ms of CPU on purpose), ahead of time by a
    scheduled job, and survives restarts. `key_id` names the service key the code was derived
    from, so a hash made under an earlier key is never served.
    """

    __tablename__ = "courier_code_hashes"
    __table_args__ = (Index("ix_courier_code_hashes_valid_until", "valid_until"),)

    bank_id: Mapped[str] = mapped_column(ForeignKey("banks.id"), primary_key=True)
    carrier_id: Mapped[str] = mapped_column(ForeignKey("carriers.id"), primary_key=True)
    # The bank's local midnight starting the day, and the next one.
    valid_from: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    valid_until: Mapped[datetime] = mapped_column(UtcDateTime)
    key_id: Mapped[str] = mapped_column(String(16))
    code_hash: Mapped[str] = mapped_column(String(64))
    salt: Mapped[str] = mapped_column(String(32))
    n: Mapped[int] = mapped_column(Integer)
    r: Mapped[int] = mapped_column(Integer)
    p: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
