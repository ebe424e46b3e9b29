"""``full``: every piece of controller state is saved; must be observationally perfect.

In-flight I/O travels as it is (its SQE and the virtual time its backend finishes), waiting
completions of a full CQ travel in order, and after the load the destination simply carries
on (a kick of every SQ, a no-op for a controller at rest).
"""

from nvmefuzz.model.profiles.base import ALL_FIELDS, Profile

PROFILE = Profile(
    name="full",
    description="saves everything the model has; the reference for a perfect design",
    source="nvmefuzz model schema (model/snapshot.py)",
    saves=ALL_FIELDS,
)
