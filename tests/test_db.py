"""The state store's schema: hubs starting together against one fresh database."""

from __future__ import annotations

import threading

import hub.runtime  # noqa: F401  (registers every table on Base)
from hub.db import Base, create_all, make_engine


def test_hubs_creating_the_schema_at_once_do_not_collide(pg_url: str) -> None:
    engines = [make_engine(pg_url) for _ in range(4)]
    start = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def create(engine: object) -> None:
        start.wait()
        try:
            create_all(engine)  # type: ignore[arg-type]
        except BaseException as exc:  # collected: a thread's exception would be lost
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with engines[0].connect() as connection:
        existing = set(connection.dialect.get_table_names(connection))
    assert set(Base.metadata.tables) <= existing
    for engine in engines:
        engine.dispose()
