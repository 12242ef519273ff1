"""
Tests for L{llamaswap.config.sources}.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from llamaswap.config.errors import Location, Problems, SourceMap
from llamaswap.config.macros import expand
from llamaswap.config.sources import readSources, readText, substituteEnv


def read(text: str, environ: Mapping[str, str] | None = None) -> tuple[Any, Problems]:
    """
    Read C{text} as the source C{c.yaml}.
    """
    problems = Problems()
    data, _ = readText(text, "c.yaml", environ or {}, problems)
    return data, problems


def messages(problems: Problems) -> list[str]:
    """
    The error messages in C{problems}.
    """
    return [p.message for p in problems.errors]


def model(modelID: str, cmd: str = "echo hi") -> str:
    """
    A model snippet nested under C{models:}, with a fixed proxy.
    """
    return f"  {modelID}:\n    cmd: {cmd}\n    proxy: http://localhost:9999\n"


class EnvMacroTests(SynchronousTestCase):
    """
    C{${env.NAME}} is substituted on the raw text of each source.
    """

    def test_substituted(self) -> None:
        """
        Set variables are substituted in values and keys, several per
        string.
        """
        data, problems = read(
            "apiKeys: ['${env.KEY}']\n"
            "models:\n"
            "  ${env.NAME}:\n"
            "    cmd: '${env.ROOT}/server --auth ${env.USER}:${env.PASS}'\n",
            {"KEY": "secret123", "NAME": "m1", "ROOT": "/opt", "USER": "u", "PASS": "p"},
        )
        self.assertEqual(len(problems), 0)
        self.assertEqual(
            data,
            {"apiKeys": ["secret123"], "models": {"m1": {"cmd": "/opt/server --auth u:p"}}},
        )

    def test_flowList(self) -> None:
        """
        Substitution happens before parsing, so a macro directly inside a
        flow list parses as a list item.
        """
        data, problems = read("apiKeys: [${env.KEY}, other]\n", {"KEY": "secret123"})
        self.assertEqual(len(problems), 0)
        self.assertEqual(data, {"apiKeys": ["secret123", "other"]})

    def test_emptyValueAllowed(self) -> None:
        """
        A variable set to the empty string is fine here (apiKeys validation
        rejects the empty key later).
        """
        data, problems = read('apiKeys: ["${env.EMPTY}"]\n', {"EMPTY": ""})
        self.assertEqual(len(problems), 0)
        self.assertEqual(data, {"apiKeys": [""]})

    def test_unsetReportedWithLine(self) -> None:
        """
        Every unset variable is reported, with the line of its first use.
        """
        data, problems = read(
            "models:\n  m:\n    cmd: ${env.FIRST}\n    env: [A=${env.SECOND}, B=${env.FIRST}]\n"
        )
        self.assertEqual(
            [str(p) for p in problems.errors],
            [
                "c.yaml:3: environment variable 'FIRST' is not set",
                "c.yaml:4: environment variable 'SECOND' is not set",
            ],
        )

    def test_newlinesRejected(self) -> None:
        """
        Values holding a newline, carriage return or NUL are rejected.
        """
        for bad in ["line1\nline2", "line1\rline2", "a\x00b"]:
            _, problems = read("cmd: ${env.MULTI}\n", {"MULTI": bad})
            self.assertEqual(
                messages(problems),
                [
                    "environment variable 'MULTI' contains newlines or null bytes "
                    "which are not allowed in YAML substitution"
                ],
            )

    def test_escapedForDoubleQuotes(self) -> None:
        """
        Backslashes and double quotes survive inside double-quoted YAML, and
        appear escaped in plain scalars, as in llama-swap.
        """
        environ = {"Q": 'value with "quotes"', "B": "path\\to\\file"}
        data, _ = read(
            'a: "server --arg \\"${env.Q}\\""\nb: "${env.B}"\nc: ${env.B}\n', environ
        )
        self.assertEqual(data["a"], 'server --arg "value with "quotes""')
        self.assertEqual(data["b"], "path\\to\\file")
        self.assertEqual(data["c"], "path\\\\to\\\\file")

    def test_commentsIgnored(self) -> None:
        """
        Variables used only in full-line, indented or inline comments need
        not be set.
        """
        data, problems = read(
            "# apiKeys:\n"
            '#   - "${env.COMMENTED_1}"\n'
            'apiKeys: ["${env.ACTIVE}"] # TODO: add ${env.FUTURE} later\n'
            "models:\n"
            "  test:\n"
            "    cmd: |\n"
            "      server\n"
            "    # metadata:\n"
            '    #   api_key: "${env.SOME_UNSET_KEY}"\n',
            {"ACTIVE": "active-key"},
        )
        self.assertEqual(len(problems), 0)
        self.assertEqual(data["apiKeys"], ["active-key"])

    def test_unparsableScansRawText(self) -> None:
        """
        When the YAML does not parse, the raw text is scanned, so an unset
        variable is reported (before the YAML error), even in a comment.
        """
        _, problems = read("a: [1, 2\n# ${env.IN_COMMENT}\n")
        self.assertEqual(
            [str(p) for p in problems.errors][0],
            "c.yaml:2: environment variable 'IN_COMMENT' is not set",
        )
        self.assertTrue(problems.errors[1].message.startswith("YAML syntax error"))

    def test_invalidNameLiteral(self) -> None:
        """
        C{${env.1X}} is not an environment macro and stays as written.
        """
        data, problems = read("a: ${env.1X}\n")
        self.assertEqual(len(problems), 0)
        self.assertEqual(data, {"a": "${env.1X}"})

    @given(
        st.dictionaries(
            st.from_regex(r"[A-Z_][A-Z0-9_]{0,5}", fullmatch=True),
            st.text(st.characters(blacklist_characters="\n\r\x00")),
            max_size=4,
        ),
        st.lists(st.sampled_from(["a: ${env.%s}", "# ${env.%s}", "b: [x, '${env.%s}']", "c: 1"])),
    )
    def test_lineCountUnchanged(self, environ: dict[str, str], templates: list[str]) -> None:
        """
        Substitution never adds or removes lines, whatever the values.
        """
        names = list(environ) or ["UNSET"]
        text = "\n".join(
            t % names[i % len(names)] if "%s" in t else t for i, t in enumerate(templates)
        )
        result = substituteEnv(text, "c.yaml", environ, Problems())
        self.assertEqual(result.count("\n"), text.count("\n"))

    @given(st.text(st.characters(blacklist_categories=("Cc", "Cs"))))
    def test_doubleQuotedRoundTrip(self, secret: str) -> None:
        """
        Any printable value substituted into a double-quoted scalar parses
        back to itself.
        """
        data, problems = read('key: "${env.SECRET}"\n', {"SECRET": secret})
        self.assertEqual(len(problems), 0)
        self.assertEqual(data, {"key": secret})


class ReadTextTests(SynchronousTestCase):
    """
    L{readText} reads one in-memory source.
    """

    def test_empty(self) -> None:
        """
        Empty and comments-only sources are the empty configuration.
        """
        for text in ["", "# nothing\n\n# here\n", "~\n"]:
            data, problems = read(text)
            self.assertEqual(data, {})
            self.assertEqual(len(problems), 0)

    def test_notMapping(self) -> None:
        """
        A top level that is not a mapping is an error naming the file.
        """
        for text in ["- a\n- b\n", "just a string\n"]:
            data, problems = read(text)
            self.assertEqual(data, {})
            self.assertEqual(
                messages(problems), ["config c.yaml: top-level YAML must be a mapping"]
            )

    def test_sourceMap(self) -> None:
        """
        The source map locates keys in the named file.
        """
        problems = Problems()
        _, sourceMap = readText("a: 1\nb:\n  c: 2\n", "mine.yaml", {}, problems)
        self.assertEqual(sourceMap.locate(("b", "c")), Location("mine.yaml", 3))


class ReadSourcesTests(SynchronousTestCase):
    """
    L{readSources} reads C{--config} and C{--config-dir} and merges them as
    llama-swap does.
    """

    def setUp(self) -> None:
        """
        Make a temporary directory for the sources.
        """
        self.base = self.mktemp()
        os.makedirs(self.base)

    def write(self, name: str, content: str) -> str:
        """
        Write C{content} to C{name} under the temporary directory.
        """
        path = os.path.join(self.base, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(content)
        return path

    def sources(
        self,
        configPath: str | None = None,
        configDir: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> tuple[dict, SourceMap, Problems]:
        """
        Run L{readSources} with a fresh collector.
        """
        problems = Problems()
        data, sourceMap = readSources(configPath, configDir, environ or {}, problems)
        return data, sourceMap, problems

    def test_neither(self) -> None:
        """
        Without a file or a directory there is nothing to load.
        """
        data, _, problems = self.sources()
        self.assertEqual(data, {})
        self.assertEqual(
            messages(problems), ["at least one of --config or --config-dir must be provided"]
        )

    def test_configOnly(self) -> None:
        """
        A single file loads as it is.
        """
        path = self.write(
            "config.yaml",
            "models:\n" + model("model1") + "groups:\n  group1:\n    members: [model1]\n",
        )
        data, sourceMap, problems = self.sources(path)
        self.assertEqual(len(problems), 0)
        self.assertEqual(list(data["models"]), ["model1"])
        self.assertEqual(data["groups"], {"group1": {"members": ["model1"]}})
        self.assertEqual(sourceMap.locate(("groups", "group1")), Location(path, 6))

    def test_dirOnly(self) -> None:
        """
        Every YAML file of the directory contributes; subdirectories and
        other files are ignored.
        """
        self.write("d/a.yaml", "models:\n" + model("alpha"))
        self.write("d/b.yml", "models:\n" + model("beta"))
        self.write("d/c.json", "models:\n" + model("gamma"))
        self.write("d/sub/d.yaml", "models:\n" + model("delta"))
        os.makedirs(os.path.join(self.base, "d", "dir.yaml"))
        data, _, problems = self.sources(None, os.path.join(self.base, "d"))
        self.assertEqual(len(problems), 0)
        self.assertEqual(list(data["models"]), ["alpha", "beta"])

    def test_configPlusDirAdditive(self) -> None:
        """
        The C{--config} file comes first, then the directory's files.
        """
        path = self.write("config.yaml", "models:\n" + model("base"))
        self.write("d/extra.yaml", "models:\n" + model("ext"))
        data, sourceMap, problems = self.sources(path, os.path.join(self.base, "d"))
        self.assertEqual(len(problems), 0)
        self.assertEqual(list(data["models"]), ["base", "ext"])
        self.assertEqual(
            sourceMap.locate(("models", "ext", "cmd")),
            Location(os.path.join(self.base, "d", "extra.yaml"), 3),
        )

    def test_configInDir(self) -> None:
        """
        The C{--config} file may not also be one of the directory's files.
        """
        path = self.write("main.yaml", "models:\n" + model("base"))
        _, _, problems = self.sources(path, self.base)
        [message] = messages(problems)
        self.assertIn("is also present in --config-dir", message)

    def test_sortedOrder(self) -> None:
        """
        Directory files merge in sorted file-name order, whatever order the
        file system lists them in.
        """
        self.write("d/z.yaml", "models:\n" + model("zmodel"))
        self.write("d/a.yaml", "models:\n" + model("amodel"))
        self.write("d/m.yaml", "apiKeys: [m]\n")
        self.write("d/b.yaml", "apiKeys: [b]\n")
        data, _, _ = self.sources(None, os.path.join(self.base, "d"))
        self.assertEqual(list(data["models"]), ["amodel", "zmodel"])
        self.assertEqual(data["apiKeys"], ["b", "m"])

    def test_duplicateEntities(self) -> None:
        """
        A model, group, peer, profile, selector or matrix key defined in two
        files is an error naming the later file.
        """
        cases = {
            "models": 'duplicate models "dup"',
            "groups": 'duplicate groups "dup"',
            "peers": 'duplicate peers "dup"',
            "profiles": 'duplicate profiles "dup"',
            "selectors": 'duplicate selectors "dup"',
            "matrix": 'duplicate matrix "dup"',
        }
        for section, expected in cases.items():
            directory = os.path.join(self.base, section)
            self.write(f"{section}/a.yaml", f"{section}:\n  dup:\n    x: 1\n  one: {{}}\n")
            second = self.write(f"{section}/b.yaml", f"{section}:\n  two: {{}}\n  dup:\n    x: 1\n")
            data, _, problems = self.sources(None, directory)
            self.assertEqual(
                [str(p) for p in problems.errors],
                [
                    f"{second}:3: {section}.dup: {expected} found in {second} "
                    "(already defined in another config source)"
                ],
            )
            self.assertEqual(list(data[section]), ["dup", "one", "two"])

    def test_routingIdentityMaps(self) -> None:
        """
        Groups under C{routing.router.settings} from two files merge, but
        one group may not be split across files.
        """
        self.write(
            "d/a.yaml",
            "routing:\n  router:\n    settings:\n      groups:\n        groupA: {members: [m1]}\n",
        )
        self.write(
            "d/b.yaml",
            "routing:\n  router:\n    use: group\n    settings:\n      groups:\n"
            "        groupB: {members: [m2]}\n",
        )
        data, _, problems = self.sources(None, os.path.join(self.base, "d"))
        self.assertEqual(len(problems), 0)
        groups = data["routing"]["router"]["settings"]["groups"]
        self.assertEqual(list(groups), ["groupA", "groupB"])
        self.assertEqual(data["routing"]["router"]["use"], "group")

        self.write(
            "d/c.yaml",
            "routing:\n  router:\n    settings:\n      groups:\n        groupA: {members: [m3]}\n",
        )
        _, _, problems = self.sources(None, os.path.join(self.base, "d"))
        self.assertEqual(len(problems.errors), 1)
        self.assertIn('duplicate groups "groupA"', problems.errors[0].message)

    def test_scalarConflict(self) -> None:
        """
        Two different values for one setting conflict; equal ones agree.
        """
        self.write("d/a.yaml", "globalTTL: 100\n")
        path = self.write("d/b.yaml", "\n\nglobalTTL: 200\n")
        _, _, problems = self.sources(None, os.path.join(self.base, "d"))
        self.assertEqual(
            [str(p) for p in problems.errors],
            [
                f'{path}:3: globalTTL: conflict at "globalTTL": {path} sets a different '
                "value than a previous source"
            ],
        )
        self.write("d/b.yaml", "globalTTL: 100\n")
        data, _, problems = self.sources(None, os.path.join(self.base, "d"))
        self.assertEqual(len(problems), 0)
        self.assertEqual(data, {"globalTTL": 100})

    def test_sameTextDifferentTag(self) -> None:
        """
        C{100} and C{"100"} are different values, as to llama-swap.
        """
        self.write("d/a.yaml", "ui:\n  x: 100\n")
        self.write("d/b.yaml", 'ui:\n  x: "100"\n')
        _, _, problems = self.sources(None, os.path.join(self.base, "d"))
        self.assertIn('conflict at "ui.x"', messages(problems)[0])

    def test_macrosCombine(self) -> None:
        """
        Macros from different files combine, in file order, keeping types;
        the same macro with the same value is fine.
        """
        self.write("d/a.yaml", "macros:\n  LOW: 1\n  SHARED: x\n")
        self.write("d/b.yaml", "macros:\n  HIGH: 2\n  SHARED: x\n")
        data, _, problems = self.sources(None, os.path.join(self.base, "d"))
        self.assertEqual(len(problems), 0)
        self.assertEqual(data["macros"], {"LOW": 1, "SHARED": "x", "HIGH": 2})

    def test_macroConflict(self) -> None:
        """
        The same macro with different values is a scalar conflict.
        """
        self.write("d/a.yaml", "macros:\n  M: 1\n")
        self.write("d/b.yaml", "macros:\n  M: 2\n")
        _, _, problems = self.sources(None, os.path.join(self.base, "d"))
        self.assertIn('conflict at "macros.M"', messages(problems)[0])

    def test_listsConcatenate(self) -> None:
        """
        Lists such as C{apiKeys} and the preload hook concatenate, and each
        item stays located in its own file.
        """
        hooks = "hooks:\n  on_startup:\n    preload: [%s]\n"
        first = self.write("d/a.yaml", "apiKeys: [key-a]\n" + hooks % "m1")
        second = self.write("d/b.yaml", "apiKeys: [key-b]\n" + hooks % "m2")
        data, sourceMap, problems = self.sources(None, os.path.join(self.base, "d"))
        self.assertEqual(len(problems), 0)
        self.assertEqual(data["apiKeys"], ["key-a", "key-b"])
        self.assertEqual(data["hooks"]["on_startup"]["preload"], ["m1", "m2"])
        self.assertEqual(sourceMap.locate(("apiKeys", 0)), Location(first, 1))
        self.assertEqual(sourceMap.locate(("apiKeys", 1)), Location(second, 1))

    def test_kindMismatch(self) -> None:
        """
        A scalar in one file and a list in another cannot merge.
        """
        self.write("d/a.yaml", "startPort: 5800\n")
        path = self.write("d/b.yaml", "startPort: [5800, 5801]\n")
        _, _, problems = self.sources(None, os.path.join(self.base, "d"))
        self.assertEqual(
            messages(problems),
            [
                'conflict at "startPort": incompatible YAML node kinds (kind 8 vs 2) '
                f"introduced by {path}"
            ],
        )

    def test_nullYields(self) -> None:
        """
        An absent or null section yields to a defined one, whichever file
        comes first, and is then located in the defining file.
        """
        self.write("d/a.yaml", "routing:\nglobalTTL: 5\nmodels:\n")
        second = self.write(
            "d/b.yaml",
            "routing:\n  router:\n    settings:\n      groups:\n        g1: {members: [m1]}\n"
            "globalTTL: ~\nmodels:\n" + model("m1"),
        )
        self.write("d/c.yaml", "routing:\nmodels:\nglobalTTL:\n")
        data, sourceMap, problems = self.sources(None, os.path.join(self.base, "d"))
        self.assertEqual(len(problems), 0)
        self.assertEqual(
            data["routing"]["router"]["settings"]["groups"], {"g1": {"members": ["m1"]}}
        )
        self.assertEqual(data["globalTTL"], 5)
        self.assertEqual(list(data["models"]), ["m1"])
        self.assertEqual(sourceMap.locate(("routing",)), Location(second, 1))

    def test_emptyFilesSkipped(self) -> None:
        """
        Empty and comments-only files are skipped; if all are, the
        configuration is empty.
        """
        self.write("d/a.yaml", "")
        self.write("d/b.yaml", "# nothing yet\n")
        data, _, problems = self.sources(None, os.path.join(self.base, "d"))
        self.assertEqual((data, len(problems)), ({}, 0))

    def test_emptyDirWithConfig(self) -> None:
        """
        An empty directory next to a config file is fine.
        """
        os.makedirs(os.path.join(self.base, "d"))
        path = self.write("main.yaml", "models:\n" + model("m1"))
        data, _, problems = self.sources(path, os.path.join(self.base, "d"))
        self.assertEqual(len(problems), 0)
        self.assertEqual(list(data["models"]), ["m1"])

    def test_emptyDirAlone(self) -> None:
        """
        A directory with no YAML files and no config file is an error.
        """
        os.makedirs(os.path.join(self.base, "d"))
        _, _, problems = self.sources(None, os.path.join(self.base, "d"))
        self.assertEqual(messages(problems), ["no configuration sources found"])

    def test_missingFileAndDir(self) -> None:
        """
        A missing file or directory is a clear error naming it.
        """
        missing = os.path.join(self.base, "nope.yaml")
        _, _, problems = self.sources(missing)
        self.assertEqual(
            messages(problems), [f"failed to read config {missing}: No such file or directory"]
        )
        missingDir = os.path.join(self.base, "nodir")
        _, _, problems = self.sources(None, missingDir)
        self.assertEqual(
            messages(problems), [f"--config-dir {missingDir}: No such file or directory"]
        )

    def test_notMapping(self) -> None:
        """
        A file whose top level is a list is rejected, naming the file.
        """
        path = self.write("list.yaml", "- a\n")
        _, _, problems = self.sources(path)
        self.assertEqual(messages(problems), [f"config {path}: top-level YAML must be a mapping"])

    def test_invalidUTF8(self) -> None:
        """
        Bytes that are not UTF-8 are reported, not raised.
        """
        path = os.path.join(self.base, "bad.yaml")
        with open(path, "wb") as f:
            f.write(b"a: 1\nb: \xff\n")
        _, _, problems = self.sources(path)
        self.assertEqual(problems.errors[0].location, Location(path, 2))

    def test_envPerFile(self) -> None:
        """
        Environment macros are substituted in each file before parsing, so
        one inside a flow list parses; errors name the file and line.
        """
        self.write("d/a.yaml", "models:\n" + model("m1"))
        keys = self.write("d/keys.yaml", "\napiKeys: [${env.TEST_API_KEY}]\n")
        data, _, problems = self.sources(
            None, os.path.join(self.base, "d"), {"TEST_API_KEY": "secret123"}
        )
        self.assertEqual(len(problems), 0)
        self.assertEqual(data["apiKeys"], ["secret123"])
        _, _, problems = self.sources(None, os.path.join(self.base, "d"))
        self.assertEqual(
            [str(p) for p in problems.errors][0],
            f"{keys}:2: environment variable 'TEST_API_KEY' is not set",
        )

    def test_macrosAcrossFiles(self) -> None:
        """
        A macro declared in one file is usable in another, and C{${PORT}}
        allocation runs on the merged models in sorted order.
        """
        self.write("d/macros.yaml", "macros:\n  SHARED: hello\nstartPort: 7000\n")
        self.write(
            "d/use.yaml",
            "models:\n  zed:\n    cmd: serve ${SHARED} --port ${PORT}\n"
            "  alpha:\n    cmd: serve --port ${PORT}\n",
        )
        problems = Problems()
        tree, sourceMap = readSources(None, os.path.join(self.base, "d"), {}, problems)
        expanded = expand(tree, sourceMap, problems)
        self.assertEqual(len(problems), 0)
        self.assertEqual(expanded.tree["models"]["zed"]["cmd"], "serve hello --port 7001")
        self.assertEqual(expanded.ports, {"alpha": 7000, "zed": 7001})
