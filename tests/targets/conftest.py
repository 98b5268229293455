import pytest

from targets.conftest_models import Models


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> Models:
    """One set of model files per test session, shared by the target test modules (each built on first use)."""
    return Models(tmp_path_factory.mktemp("target-models"))
