"""Migration profiles by name: ``get(name)``; ``NAMES`` lists the built-in ones.

A name of the form ``BASE-without-PATH`` is the profile BASE with one schema path no longer
saved (the generated field mutants); the hand-written mutants of ``mutants.MUTANTS``
(``full+SLUG``) resolve by name too.
"""

from __future__ import annotations

from nvmefuzz.errors import CampaignError
from nvmefuzz.model.profiles import full, nvmecs_v0, qemu_11_1, qemu_v3_patch
from nvmefuzz.model.profiles.base import ALL_FIELDS, Profile

PROFILES: dict[str, Profile] = {
    p.name: p for p in (full.PROFILE, qemu_v3_patch.PROFILE, qemu_11_1.PROFILE,
                        nvmecs_v0.PROFILE)
}
NAMES = tuple(PROFILES)


def get(name: str) -> Profile:
    if name in PROFILES:
        return PROFILES[name]
    base, sep, path = name.partition("-without-")
    if sep and base in PROFILES and path in PROFILES[base].saves:
        return PROFILES[base].without(path)
    from nvmefuzz.model.profiles import mutants    # lazily: mutants imports this package

    if name in mutants.MUTANTS:
        return mutants.MUTANTS[name]
    raise CampaignError(f"unknown profile {name!r}; known: {', '.join(NAMES)} "
                        f"(and BASE-without-FIELD, full+MUTANT)")


__all__ = ["ALL_FIELDS", "NAMES", "PROFILES", "Profile", "get"]
