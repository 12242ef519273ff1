"""
Memory budget scheduling through a whole llamaswap with demo upstreams
declaring C{memory}: models that fit run together, the least recently
used idle one makes room, a busy one is never stopped, an oversized one is
refused and nothing stops; C{/running} and C{/metrics} show the memory.
"""

from __future__ import annotations

from typing import Any

import treq
from twisted.trial.unittest import TestCase

from llamaswap.upstream.lifecycle import State

from ..harness import Running, demoMacros, startLlamaSwap
from .test_api import openEvents, samples

GiB = 1024**3

CONFIG = (
    demoMacros()
    + """
memoryBudget: 10GiB
models:
  a:
    cmd: ${demo} --tokens 100 --token-delay 0.1
    memory: 4GiB
  b:
    cmd: ${demo} --tokens 100 --token-delay 0.1
    memory: 4GiB
  c:
    cmd: ${demo} --tokens 100 --token-delay 0.1
    memory: 4GiB
  huge:
    cmd: ${demo}
    memory: 11GiB
"""
)


async def runningModels(running: Running) -> dict[str, Any]:
    response = await running.get("/running")
    return dict(await response.json())


def states(document: dict[str, Any]) -> dict[str, str]:
    return {entry["model"]: entry["state"] for entry in document["running"]}


class MemoryTests(TestCase):
    timeout = 120

    async def chat(self, running: Running, model: str) -> None:
        status, body = await running.chat(model, max_tokens=1)
        self.assertEqual(status, 200, body)

    async def test_fitEvictRefuse(self) -> None:
        """
        Two 4 GiB models run together in 10 GiB; a third evicts the least
        recently used; one of 11 GiB is refused with the sizes named and
        nothing stops.
        """
        running = await startLlamaSwap(self, CONFIG)
        await self.chat(running, "a")
        await self.chat(running, "b")
        document = await runningModels(running)
        self.assertEqual(states(document), {"a": "ready", "b": "ready"})
        self.assertEqual(
            document["memory"], {"budget": {"memory": 10 * GiB}, "in_use": {"memory": 8 * GiB}}
        )
        self.assertEqual(document["running"][0]["memory"], 4 * GiB)
        self.assertFalse(document["running"][0]["memory_estimated"])
        metrics = samples(await (await running.get("/metrics")).text())
        self.assertEqual(
            metrics[("llamaswap_memory_in_use_bytes", (("device", "memory"),))], 8 * GiB
        )
        self.assertEqual(
            metrics[("llamaswap_memory_budget_bytes", (("device", "memory"),))], 10 * GiB
        )
        self.assertEqual(metrics[("llamaswap_model_memory_bytes", (("model", "huge"),))], 11 * GiB)

        await self.chat(running, "c")
        self.assertEqual(states(await runningModels(running)), {"b": "ready", "c": "ready"})

        pids = {m: running.app.supervisors[m].pid for m in ("b", "c")}
        response = await running.post(
            "/v1/chat/completions",
            json={"model": "huge", "messages": [{"role": "user", "content": "hi"}]},
        )
        body = await response.json()
        self.assertEqual(response.code, 507)
        self.assertEqual(
            body["error"]["message"], "model huge needs 11.0 GiB but the memory budget is 10.0 GiB"
        )
        self.assertEqual(body["error"]["code"], "model_exceeds_memory_budget")
        self.assertEqual(states(await runningModels(running)), {"b": "ready", "c": "ready"})
        self.assertEqual({m: running.app.supervisors[m].pid for m in ("b", "c")}, pids)
        self.assertIs(running.app.supervisors["huge"].state, State.STOPPED)

    async def test_busyNeverEvicted(self) -> None:
        """
        With a serving a long stream, the least recently used model, c
        evicts the idle b instead.
        """
        running = await startLlamaSwap(self, CONFIG)
        await self.chat(running, "b")
        stream = await running.post(
            "/v1/chat/completions",
            json={"model": "a", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        )
        self.assertEqual(stream.code, 200)
        await self.chat(running, "b")  # b is now more recent than a
        await self.chat(running, "c")
        self.assertEqual(states(await runningModels(running)), {"a": "ready", "c": "ready"})
        body = await treq.content(stream)
        self.assertIn(b"data: [DONE]", body)

    async def test_events(self) -> None:
        """
        C{/api/events}: C{modelStatus} entries carry each model's memory,
        and a C{memory} event (in the initial burst and after every state
        change) the budget and what is in use.
        """
        running = await startLlamaSwap(self, CONFIG)
        reader = await openEvents(self, running)
        await reader.waitFor(lambda events: any(k == "memory" for k, _ in events))
        [status] = reader.of("modelStatus")[:1]
        self.assertEqual({e["id"]: e["memory"] for e in status}["huge"], 11 * GiB)
        self.assertEqual(reader.of("memory")[0], {"budget": {"memory": 10 * GiB}, "in_use": {"memory": 0}})
        await self.chat(running, "a")
        await reader.waitFor(
            lambda events: any(
                k == "memory" and d["in_use"].get("memory") == 4 * GiB for k, d in events
            )
        )
