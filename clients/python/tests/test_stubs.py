"""The committed stubs match proto/shuyu/v1/shuyu.proto and import inside the package."""

import importlib.util
import sys
import unittest
from pathlib import Path

import _support

from shuyu_client import pb, pb_grpc

GEN_STUBS = _support.CLIENT_ROOT / "tools" / "gen_stubs.py"


def load_gen_stubs():
    if not GEN_STUBS.is_file():
        raise unittest.SkipTest("tools/gen_stubs.py not found (not a repository checkout)")
    spec = importlib.util.spec_from_file_location("shuyu_gen_stubs", GEN_STUBS)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class Drift(unittest.TestCase):
    def test_committed_stubs_match_the_proto(self):
        gen = load_gen_stubs()
        have = gen._grpc_tools_version()
        if have is None:
            self.skipTest(
                f"grpcio-tools not installed (pip install grpcio-tools=={gen.GRPCIO_TOOLS_VERSION})"
            )
        if have != gen.GRPCIO_TOOLS_VERSION:
            self.skipTest(
                f"grpcio-tools {have} installed; the stubs come from {gen.GRPCIO_TOOLS_VERSION}"
            )
        if not (gen.PROTO_ROOT / gen.PROTO_FILES[0]).is_file():
            self.skipTest("proto/ not found (not a repository checkout)")
        problems = gen.check(gen.generate())
        self.assertEqual(
            problems,
            [],
            "stubs drifted; run python clients/python/tools/gen_stubs.py\n" + "\n".join(problems),
        )

    def test_generation_is_deterministic(self):
        gen = load_gen_stubs()
        if gen._grpc_tools_version() is None or not (gen.PROTO_ROOT / gen.PROTO_FILES[0]).is_file():
            self.skipTest("grpcio-tools or proto/ missing")
        self.assertEqual(gen.generate(), gen.generate())


class Layout(unittest.TestCase):
    def test_modules_live_inside_the_package(self):
        self.assertEqual(pb.__name__, "shuyu_client._proto.shuyu.v1.shuyu_pb2")
        self.assertEqual(pb.Job.__module__, "shuyu_client._proto.shuyu.v1.shuyu_pb2")
        self.assertIs(pb_grpc.shuyu_dot_v1_dot_shuyu__pb2, pb)
        # The descriptor keeps its canonical name, so the wire type names are unchanged.
        self.assertEqual(pb.DESCRIPTOR.name, "shuyu/v1/shuyu.proto")
        self.assertEqual(pb.Job.DESCRIPTOR.full_name, "shuyu.v1.Job")

    def test_no_top_level_shuyu_package_needed(self):
        generated = Path(pb.__file__).parent
        text = (generated / "shuyu_pb2_grpc.py").read_text(encoding="utf-8")
        self.assertNotIn("\nfrom shuyu.v1 import", text)
        self.assertTrue((generated / "shuyu_pb2.pyi").is_file())

    def test_contract_has_the_rpcs_the_client_uses(self):
        services = pb.DESCRIPTOR.services_by_name
        expected = {
            "SessionService": {"WhoAmI"},
            "CatalogService": {"ListDatasets", "DescribeDataset", "SampleDataset"},
            "JobService": {
                "SubmitJob",
                "GetJob",
                "ListJobs",
                "CancelJob",
                "PromoteJob",
                "GetUsage",
            },
            "ScenarioService": {"ApplyScenario", "ListScenarios", "GetScenario", "DecideScenario"},
        }
        for service, methods in expected.items():
            self.assertLessEqual(methods, set(services[service].methods_by_name), service)
        fields = pb.SubmitJobRequest.DESCRIPTOR.fields_by_name
        self.assertEqual(
            {n: fields[n].number for n in ("sql", "substrait_plan", "mode", "scenario_id")},
            {"sql": 1, "substrait_plan": 2, "mode": 3, "scenario_id": 4},
        )


if __name__ == "__main__":
    unittest.main()
