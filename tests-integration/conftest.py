import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))


def pytest_configure(config):
    # pytest-xdist registers it when installed; registered here too so a serial run does not warn
    config.addinivalue_line("markers", "xdist_group(name): run these tests on one pytest-xdist worker")
