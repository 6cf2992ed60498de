"""Resident identity numbers: validation (ISO 7064 MOD 11-2) and keyed hashing.

Only an HMAC-SHA256 of the number and its last four characters are ever stored. The key is passed in
explicitly (Settings.identity_keyring in the app) so that nothing here depends on process globals.
Keys are versioned: a `Keyring` hashes new identities with its current key and still recognises a
number under the older keys it lists, so rotating the key never splits one person into two (see
`commerce.services.shoppers.register_identity`, which moves a person's rows to the current key).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

from commerce.errors import ValidationError

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"


def check_char(first17: str) -> str:
    """The check character for 17 leading digits."""
    return CHECK_CHARS[sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True)) % 11]


def normalize_id_number(id_number: str) -> str:
    """Return the canonical (upper-case X) number, or raise ValidationError without echoing it back."""
    if not isinstance(id_number, str):
        raise ValidationError("resident ID number must be a string", code="invalid_id_number")
    number = id_number.strip().upper()
    if len(number) != 18 or not number[:17].isdigit() or not (number[17].isdigit() or number[17] == "X"):
        raise ValidationError(
            "resident ID number must be 17 digits followed by a digit or X", code="invalid_id_number"
        )
    if check_char(number[:17]) != number[17]:
        raise ValidationError("resident ID number check character is wrong", code="invalid_id_number")
    return number


def id_digest(id_number: str, key: str) -> str:
    """HMAC-SHA256 (hex) of a validated number: equal numbers match without the number being stored."""
    if not key:
        raise ValidationError("identity key must not be empty", code="invalid_identity_key")
    number = normalize_id_number(id_number)
    return hmac.new(key.encode(), number.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Keyring:
    """The current identity key with its version, and the older keys still needed to recognise people
    hashed before a rotation (version -> key)."""

    key: str
    version: int = 1
    previous: Mapping[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.key or not all(self.previous.values()):
            raise ValidationError("identity keys must not be empty", code="invalid_identity_key")
        if self.version < 1 or any(v < 1 or v >= self.version for v in self.previous):
            raise ValidationError(
                "identity key versions are positive and every previous version is below the current one",
                code="invalid_identity_key",
            )
        if self.key in self.previous.values():
            raise ValidationError(
                "a rotated identity key must differ from the old ones", code="invalid_identity_key"
            )

    def digest(self, id_number: str) -> str:
        """The number's digest under the current key: what new rows store."""
        return id_digest(id_number, self.key)

    def previous_digests(self, id_number: str) -> dict[int, str]:
        """The number's digest under each older key, newest first: where rows from before rotations are."""
        return {v: id_digest(id_number, self.previous[v]) for v in sorted(self.previous, reverse=True)}
