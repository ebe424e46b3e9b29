"""Hypothesis example databases from a URL: a directory, or ``redis://host:port[/db]``.

The example database is a cache keyed by the state machine's source: it lets a failure found
on one machine (or by one worker) be replayed and shrunk by another, and lets shrinking
resume after a crash.  It is never the regression corpus (that is ``corpus/``).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase

from nvmefuzz.errors import TargetUnavailable


def open_database(url: str | Path | None) -> ExampleDatabase | None:
    if url is None:
        return None
    text = str(url)
    if text.startswith(("redis://", "rediss://", "unix://")):
        try:
            import redis
            from hypothesis.extra.redis import RedisExampleDatabase
        except ImportError as exc:
            raise TargetUnavailable("a Redis example database needs the 'redis' package "
                                    "(pip install 'nvmefuzz[nightly]')", exc) from None
        client = redis.Redis.from_url(text)
        try:
            client.ping()
        except redis.exceptions.RedisError as exc:
            raise TargetUnavailable(f"cannot reach the example database at {text}: {exc}",
                                    exc) from None
        return RedisExampleDatabase(client, expire_after=timedelta(days=90),
                                    key_prefix=b"nvmefuzz:")
    return DirectoryBasedExampleDatabase(text)


class KeepingDatabase(ExampleDatabase):
    """A database wrapper that never deletes.

    Hypothesis deletes a stored example that no longer fails.  In nvmefuzz an example whose
    finding is already in the local corpus ends quietly (it "passes"), which would delete it
    from a database other machines have not read yet; keeping it lets every machine replay
    it.  Entries still expire the way the wrapped database expires them.
    """

    def __init__(self, inner: ExampleDatabase) -> None:
        super().__init__()
        self.inner = inner

    def save(self, key: bytes, value: bytes) -> None:
        self.inner.save(key, value)

    def fetch(self, key: bytes):
        return self.inner.fetch(key)

    def delete(self, key: bytes, value: bytes) -> None:
        return None

    def move(self, src: bytes, dest: bytes, value: bytes) -> None:
        if src != dest:
            self.inner.save(dest, value)
