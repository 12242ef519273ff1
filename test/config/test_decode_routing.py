"""
Tests for L{llamaswap.config.decode_routing}: groups, the matrix router
and the FIFO scheduler.
"""

from __future__ import annotations

from llamaswap.config.model import DEFAULT_GROUP_ID, GroupConfig

from .helpers import MODELS, BuildTestCase


class RoutingTests(BuildTestCase):
    """
    Legacy C{groups}/C{matrix} versus C{routing.router}, groups, scheduler.
    """

    def test_legacyGroups(self) -> None:
        """
        Top-level groups are used by the group router with the fifo
        scheduler.
        """
        config = self.loads(MODELS + "groups: {g: {members: [model1, model2]}}")
        self.assertEqual(config.routing.use, "group")
        self.assertEqual(config.routing.scheduler, "fifo")
        self.assertEqual(config.routing.groups["g"].members, ("model1", "model2"))
        self.assertIsNone(config.routing.matrix)

    def test_newStyleGroups(self) -> None:
        """
        routing.router.settings.groups is honoured, with or without
        C{use: group}.
        """
        for use in ("use: group, ", ""):
            config = self.loads(
                MODELS
                + f"routing: {{router: {{{use}settings: {{groups: {{g: {{swap: false, members: [model3]}}}}}}}}}}"
            )
            self.assertEqual(config.routing.use, "group")
            self.assertEqual(
                config.routing.groups["g"], GroupConfig("g", swap=False, members=("model3",))
            )
            self.assertEqual(config.routing.groups[DEFAULT_GROUP_ID].members, ("model1", "model2"))

    def test_noRoutingDefaults(self) -> None:
        """
        Without routing configuration every model is in the C{(default)}
        group, sorted.
        """
        config = self.loads(MODELS)
        self.assertEqual(config.routing.use, "group")
        self.assertEqual(list(config.routing.groups), [DEFAULT_GROUP_ID])
        self.assertEqual(
            config.routing.groups[DEFAULT_GROUP_ID].members, ("model1", "model2", "model3")
        )
        self.assertEqual(config.groupOf("model2"), config.routing.groups[DEFAULT_GROUP_ID])

    def test_groupDefaults(self) -> None:
        """
        A group defaults to swap, exclusive, not persistent, no members.
        """
        config = self.loads(MODELS + "groups: {g: {members: [model1]}, e: {}}")
        self.assertEqual(
            config.routing.groups["g"], GroupConfig("g", True, True, False, ("model1",))
        )
        self.assertEqual(config.routing.groups["e"], GroupConfig("e"))

    def test_legacyMatrix(self) -> None:
        """
        A top-level matrix selects the matrix router with a compiled
        program and no groups; the routing.router spelling gives the same.
        """
        legacy = self.loads(MODELS + "matrix: {sets: {pair: 'model1 & model2'}}")
        self.assertEqual(legacy.routing.use, "matrix")
        self.assertIsNotNone(legacy.routing.matrix)
        self.assertEqual(dict(legacy.routing.groups), {})
        self.assertIsNone(legacy.groupOf("model1"))
        self.assertTrue(legacy.routing.matrix.canContainAll(["model1", "model2"]))
        self.assertFalse(legacy.routing.matrix.canContainAll(["model1", "model3"]))
        new = self.loads(
            MODELS
            + "routing: {router: {use: matrix, settings: {matrix: {sets: {pair: 'model1 & model2'}}}}}"
        )
        self.assertEqual(new.routing.use, "matrix")
        self.assertTrue(new.routing.matrix.canContainAll(["model1", "model2"]))

    def test_matrixErrorsReported(self) -> None:
        """
        Matrix compile errors (from the DSL compiler) fail the load.
        """
        self.fails(MODELS + "matrix: {sets: {}}", "matrix: ")

    def test_legacyAndRoutingConflict(self) -> None:
        """
        Legacy top-level keys together with routing.router are an error
        asking to migrate.
        """
        problem = self.fails(
            MODELS + "groups: {g: {members: [model1]}}\nrouting: {router: {use: group}}",
            "migrate",
        )
        self.assertEqual(
            problem.message,
            "config uses both the legacy top-level 'matrix'/'groups' keys and the new"
            " 'routing.router' block; please migrate the top-level keys into"
            " 'routing.router' and remove them",
        )

    def test_legacyGroupsAndMatrix(self) -> None:
        """
        Top-level groups and matrix together are an error.
        """
        self.fails(
            MODELS + "groups: {g: {members: [model1]}}\nmatrix: {sets: {s: model1}}",
            "config cannot use both 'groups' and 'matrix'",
        )

    def test_matrixWithoutSettings(self) -> None:
        """
        C{use: matrix} without settings.matrix is an error.
        """
        self.assertEqual(
            self.fails(MODELS + "routing: {router: {use: matrix}}", "not set").message,
            "routing.router.use is 'matrix' but routing.router.settings.matrix is not set",
        )

    def test_groupsWinWhenBothSettings(self) -> None:
        """
        C{use: group} with both settings: the groups are used and the matrix
        is ignored (with a warning).
        """
        config = self.loads(
            MODELS + "routing: {router: {use: group, settings: {groups: {g: {members: [model1]}},"
            " matrix: {sets: {s: model1}}}}}"
        )
        self.assertEqual(config.routing.use, "group")
        self.assertIsNone(config.routing.matrix)
        self.assertIn("g", config.routing.groups)
        self.warned("is not 'matrix'")

    def test_unknownRouter(self) -> None:
        """
        An unknown router name is an error.
        """
        self.assertEqual(
            self.fails(MODELS + "routing: {router: {use: random}}", "unknown router").message,
            'routing.router.use: unknown router "random" (valid: group, matrix)',
        )

    def test_scheduler(self) -> None:
        """
        The scheduler must be fifo.
        """
        self.assertEqual(self.loads("routing: {scheduler: {use: fifo}}").routing.scheduler, "fifo")
        self.assertEqual(
            self.fails("routing: {scheduler: {use: lifo}}", "unknown scheduler").message,
            'routing.scheduler.use: unknown scheduler "lifo" (valid: fifo)',
        )

    def test_fifoPriority(self) -> None:
        """
        Priority keys must name models or aliases; values are kept (alias
        keys resolved to the model ID); unknown names are errors.
        """
        config = self.loads(
            MODELS + "routing: {scheduler: {settings: {fifo: {priority: {model2: 5, m1: 3}}}}}"
        )
        self.assertEqual(dict(config.routing.priority), {"model2": 5, "model1": 3})
        self.assertEqual(config.routing.priorityOf("model2"), 5)
        self.assertEqual(config.routing.priorityOf("model3"), 0)
        problem = self.fails(
            MODELS + "routing: {scheduler: {settings: {fifo: {priority: {ghost: 1}}}}}",
            "unknown model",
        )
        self.assertEqual(
            problem.message,
            'routing.scheduler.settings.fifo.priority references unknown model "ghost"',
        )

    def test_maxWaitForSwap(self) -> None:
        """
        maxWaitForSwap defaults to 30 seconds, may be set, must be >= 0.
        """
        self.assertEqual(self.loads("").routing.maxWaitForSwap, 30)
        self.assertEqual(
            self.loads(
                "routing: {scheduler: {settings: {fifo: {maxWaitForSwap: 0}}}}"
            ).routing.maxWaitForSwap,
            0,
        )
        self.assertEqual(
            self.loads(
                "routing: {scheduler: {settings: {fifo: {maxWaitForSwap: 5}}}}"
            ).routing.maxWaitForSwap,
            5,
        )
        self.fails(
            "routing: {scheduler: {settings: {fifo: {maxWaitForSwap: -1}}}}",
            "routing.scheduler.settings.fifo.maxWaitForSwap must be >= 0",
        )

    def test_swapOverlap(self) -> None:
        """
        routing.swapOverlap defaults to auto, may be off (or a boolean);
        anything else is an error naming the key.
        """
        self.assertEqual(self.loads("").routing.swapOverlap, "auto")
        self.assertEqual(self.loads("routing: {swapOverlap: off}").routing.swapOverlap, "off")
        self.assertEqual(self.loads("routing: {swapOverlap: Auto}").routing.swapOverlap, "auto")
        self.assertEqual(self.loads("routing: {swapOverlap: false}").routing.swapOverlap, "off")
        self.fails(
            "routing: {swapOverlap: sometimes}",
            "routing.swapOverlap must be auto or off",
        )

    def test_memberInTwoGroups(self) -> None:
        """
        llama-swap's GroupMemberIsUnique: a model in two groups is an error.
        """
        problem = self.fails(
            MODELS + "groups: {g1: {members: [model1, model2]}, g2: {members: [model2]}}",
            "multiple groups",
        )
        self.assertEqual(
            problem.message, "model member model2 is used in multiple groups: g1 and g2"
        )
        self.assertEqual(problem.path, ("groups", "g2", "members", 0))

    def test_duplicateMember(self) -> None:
        """
        A member listed twice in one group is an error.
        """
        self.fails(
            MODELS + "groups: {g: {members: [model1, model1]}}",
            "duplicate model member model1 found in group: g",
        )

    def test_unknownMember(self) -> None:
        """
        A member that is not a model is a load error.
        """
        problem = self.fails(MODELS + "groups: {g: {members: [model1, ghost]}}", "no model config")
        self.assertEqual(problem.message, 'no model config for "ghost"')
        self.assertEqual(problem.path, ("groups", "g", "members", 1))

    def test_aliasMember(self) -> None:
        """
        An alias as a group member is replaced by its model ID (warning),
        so the model is not also put in C{(default)}.
        """
        config = self.loads(MODELS + "groups: {g: {members: [m1]}}")
        self.assertEqual(config.routing.groups["g"].members, ("model1",))
        self.assertEqual(config.routing.groups[DEFAULT_GROUP_ID].members, ("model2", "model3"))
        self.warned("is an alias of model")

    def test_userDefaultGroupReplaced(self) -> None:
        """
        A user group named C{(default)} is replaced by the automatic one
        (warning); its models are ungrouped and so land in it.
        """
        config = self.loads(
            MODELS
            + "groups: {'(default)': {swap: false, members: [model1]}, g: {members: [model2]}}"
        )
        self.assertEqual(
            config.routing.groups[DEFAULT_GROUP_ID],
            GroupConfig(DEFAULT_GROUP_ID, members=("model1", "model3")),
        )
        self.warned("reserved")
