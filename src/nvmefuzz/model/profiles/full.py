"""``full``: every piece of controller state is saved; must be observationally perfect.

In-flight I/O travels as it is (its SQE and the virtual time its backend finishes), waiting
completions of a full CQ travel in order, and after the load the destination carries on
without being kicked: a controller at rest has no scheduled work, and an extra pass over the
SQs would read shadow doorbells the twin has not read yet (a difference the guest can see).
"""

from nvmefuzz.model.profiles.base import ALL_FIELDS, Profile, _nothing

PROFILE = Profile(
    name="full",
    description="saves everything the model has; the reference for a perfect design",
    source="nvmefuzz model schema (model/snapshot.py)",
    saves=ALL_FIELDS,
    post_load=_nothing,
)
