import pytest

from support.common import BUNDLED, bundled_data, bundled_model

HOSTS = {
    "vnni": ("x86_64", frozenset({"avx2", "avx512f", "avx512_vnni", "amx_int8"})),
    "avx2": ("x86_64", frozenset({"avx2", "fma"})),
    "arm64": ("aarch64", frozenset({"asimd", "asimddp"})),
}


def pytest_addoption(parser):
    parser.addoption("--host-cpu", default="native", choices=["native", *HOSTS],
                     help="pretend the host CPU is this one wherever onnxcompress looks at the host (target auto)")


@pytest.fixture(autouse=True)
def _host_cpu(request, monkeypatch):
    """With --host-cpu, every host lookup sees the forced CPU: the suite must pass on each."""
    forced = request.config.getoption("--host-cpu")
    if forced != "native":
        from onnxcompress.quantization import target

        machine, flags = HOSTS[forced]
        monkeypatch.setattr(target, "host_facts", lambda: target.HostFacts(machine, flags))


@pytest.fixture(params=BUNDLED)
def bundled(request):
    """(model path, calibration npz, eval npz) of each bundled model."""
    name = request.param
    return bundled_model(name), bundled_data(name, "calib"), bundled_data(name, "eval")
