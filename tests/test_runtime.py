"""Process settings: torch threads and retained freed memory (each check in a fresh process)."""

import json
import subprocess
import sys
import textwrap

import pytest

from neurorl import runtime

FAULTS_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    import torch
    from neurorl import runtime

    from neurorl.snn.actors import ActorSpec, build_actor

    retained = runtime.configure(2, retain_memory=sys.argv[1] == "on")
    threads = torch.get_num_threads()
    actor = build_actor("popsan", ActorSpec(obs_dim=11, act_dim=3, T=5))
    obs = torch.randn(256, 11)
    for _ in range(3):
        actor(obs).sum().backward()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        actor(obs).sum().backward()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    print(json.dumps({"retained": retained, "threads": threads, "faults": faults}))
""")


def run_script(mode):
    result = subprocess.run([sys.executable, "-c", FAULTS_SCRIPT, mode], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.skipif(runtime._glibc() is None, reason="needs glibc's mallopt")
def test_retained_memory_avoids_page_faults():
    """A PopSAN forward+backward (1.3 MiB buffers) gets fresh zero pages unless freed memory is retained."""
    default = run_script("off")
    retained = run_script("on")

    assert retained["retained"] is True
    assert default["retained"] is False
    assert default["faults"] >= 5 * 500
    assert retained["faults"] < default["faults"] / 10


def test_configure_sets_threads():
    assert run_script("off")["threads"] == 2


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_configure_rejects_bad_threads(threads):
    with pytest.raises(ValueError, match="expected a positive integer"):
        runtime.configure(threads, retain_memory=False)
