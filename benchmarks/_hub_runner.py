"""Run the hub over HTTP, for benchmarks/bench.py.

    python benchmarks/_hub_runner.py [--config FILE.json] [--profile OUT.prof | --pyinstrument OUT.html]

Binds 127.0.0.1 on a free port, prints `PORT=<n>` on stdout, and serves the aggregated endpoint at
`/mcp` until SIGTERM/SIGINT.

- `--config`: the hub config as JSON (the same document as the YAML file; bench.py writes it:
  servers, auth, policies, rate limits, state_dir). `${VAR}` and `key_env` read this process's
  environment. Without it: one stdio fixture server `fx` (its `echo` exposed as `fx__echo`),
  `auth: none`.

- `--profile`: the whole run is recorded with cProfile, timed in process CPU time (the timer call
  inflates the hub's CPU ~3x; read it for proportions), written on a graceful exit.
- `--pyinstrument`: the same with pyinstrument (wall-clock sampling; `pip install pyinstrument`),
  written as .html, .txt and .pyisession.
- It runs on uvloop and tunes the garbage collector (`hub.gc_tuning`), as `mcphub serve` does.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (str(ROOT), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

from hub.app import Hub, freeze_startup_heap, tune_for_serving  # noqa: E402
from hub.config import parse_config  # noqa: E402
from hub.endpoint import HttpServer, bind_socket, run_event_loop  # noqa: E402

FIXTURE = ROOT / "tests" / "servers" / "fixture_server.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="FILE.json", help="the hub config as JSON (default: one fixture server)")
    parser.add_argument("--profile", metavar="OUT.prof", help="record the run with cProfile into this file")
    parser.add_argument("--pyinstrument", metavar="OUT.html", help="record the run with pyinstrument into this file")
    args = parser.parse_args()
    if args.config:
        cfg = parse_config(json.loads(Path(args.config).read_text(encoding="utf-8")), file=args.config)
    else:
        cfg = parse_config({"servers": {"fx": {"command": sys.executable, "args": [str(FIXTURE)]}}})
    tune_for_serving()  # as `mcphub serve` does (hub.gc_tuning)
    hub = Hub(cfg)
    freeze_startup_heap()
    sock = bind_socket("127.0.0.1", 0)
    print(f"PORT={sock.getsockname()[1]}", flush=True)
    server = HttpServer(hub.http_app(), sock)

    if not (args.profile or args.pyinstrument):
        run_event_loop(server.serve)
        return

    # uvicorn re-raises the signal it caught once it has shut down; with the default SIGTERM
    # disposition that would kill the process before the profile is written.
    signal.signal(signal.SIGTERM, lambda *_: None)
    if args.pyinstrument:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001, async_mode="disabled")
        profiler.start()
        try:
            run_event_loop(server.serve)
        finally:
            profiler.stop()
            Path(args.pyinstrument).write_text(profiler.output_html(), encoding="utf-8")
            if profiler.last_session is not None:
                profiler.last_session.save(str(Path(args.pyinstrument).with_suffix(".pyisession")))
            Path(args.pyinstrument).with_suffix(".txt").write_text(
                profiler.output_text(unicode=False, color=False, show_all=False), encoding="utf-8"
            )
        return

    import cProfile
    import time

    # CPU time (user + system of this process), not wall time: waits in epoll and preemption by
    # the other processes on a 2-core machine would otherwise dominate.
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    try:
        run_event_loop(server.serve)
    finally:
        profile.disable()
        profile.dump_stats(args.profile)


if __name__ == "__main__":
    main()
