import pytest

from loopml.store import Store


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """The same store interface on a SQLite file and on the real PostgreSQL server."""
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    s = Store.open(tmp_path, url=url)
    yield s
    s.close()
