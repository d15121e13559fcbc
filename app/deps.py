"""Request-scoped dependencies: one database session (and transaction) per request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.db import unit_of_work


def get_session(request: Request) -> Iterator[Session]:
    with unit_of_work(request.app.state.sessionmaker) as session:
        yield session


# scope="function": the transaction commits when the route returns, before the response is sent,
# so a client never sees a 2xx for work that then failed to commit.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
