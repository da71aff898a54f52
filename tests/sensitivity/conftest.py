import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Each test gets its own sensitivity cache folder."""
    monkeypatch.setenv("MPSEARCH_CACHE", str(tmp_path / "cache"))
