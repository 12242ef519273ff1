"""
What waking a sleeping process costs on this machine (the reason for
C{--idle-spin}, docs/performance.rst "Spinning before sleeping").  Not a
test.

A client sends one byte over loopback TCP and waits for the echo, 5,000
times; the echoing child either blocks in C{epoll_wait} between bytes or
polls without blocking (as llamaswap's reactor does for up to its
window).  The difference of the two round trips is about one wake-up.

Run: python bench/wakeup.py [--rounds 5000] [--think 200]

The client computes for C{--think} microseconds between round trips, as
a client or proxy does between requests; with none, both processes may
share one CPU and every wake is a cheap context switch.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import statistics
import time


def echo(listener: socket.socket, spin: bool) -> None:
    """
    The child: echo every byte; C{spin}: poll without blocking first.
    """
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    poller = select.epoll()
    poller.register(conn.fileno(), select.EPOLLIN)
    while True:
        if spin:
            end = time.perf_counter() + 0.002
            while not poller.poll(0) and time.perf_counter() < end:
                pass
        poller.poll(-1)
        data = conn.recv(100)
        if not data:
            return
        conn.sendall(data)


def roundTrips(spin: bool, rounds: int, think: float) -> list[float]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    child = os.fork()
    if child == 0:
        try:
            echo(listener, spin)
        finally:
            os._exit(0)
    address = listener.getsockname()
    listener.close()
    times = []
    try:
        with socket.create_connection(address) as client:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in range(rounds):
                busyUntil = time.perf_counter() + think
                while time.perf_counter() < busyUntil:
                    pass
                began = time.perf_counter()
                client.sendall(b"x")
                client.recv(100)
                times.append(time.perf_counter() - began)
    except BaseException:
        os.kill(child, signal.SIGKILL)
        raise
    finally:
        os.waitpid(child, 0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5000)
    parser.add_argument(
        "--think", type=float, default=200.0,
        help="microseconds the client computes between round trips",
    )
    args = parser.parse_args()
    results = {}
    for spin in (False, True):
        times = sorted(roundTrips(spin, args.rounds, args.think / 1e6))
        results[spin] = statistics.median(times)
        print(
            f"echo {'polls' if spin else 'blocks'}: round trip p50"
            f" {results[spin] * 1e6:6.1f} us, p90 {times[int(len(times) * 0.9)] * 1e6:6.1f} us"
        )
    print(f"one wake-up costs about {(results[False] - results[True]) * 1e6:.1f} us")


if __name__ == "__main__":
    main()
