"""Server reflection as a generic client sees it: Debian's python3-grpcio and python3-protobuf,
no stubs and no .proto file of batchd.

The reflection protocol's own messages come from the client's copy of the protocol
(/usr/share/grpc-proto, compiled here with grpc_tools.protoc into a descriptor set). Everything
about batchd (the batch API, google.rpc error details) is learnt from the server through
reflection: a DescriptorPool is built from the returned FileDescriptorProto bytes and message
classes are made from it, the way grpcurl works.

Covers: list_services (v1 and v1alpha), file_containing_symbol for services, methods, messages,
nested messages and enums, file_by_filename, NOT_FOUND error responses in the stream,
all_extension_numbers_of_type, answers that are protoc's own bytes, a SubmitBatch with a JSON
body through the reflected types (ItemResult.json read back), the rich error details of every
error path batchd has (decoded with reflected google.rpc types), --no-reflection, and an open
reflection stream across SIGTERM.

Run by ctest with BATCHD_SOURCE_DIR and BATCHD_BINARY_DIR, under /usr/bin/python3.
"""

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

BINARY_DIR = os.environ["BATCHD_BINARY_DIR"]
BATCHD = os.path.join(BINARY_DIR, "server", "batchd")
UPSTREAM = os.path.join(BINARY_DIR, "tools", "upstream", "batchd-upstream")
BUILD_SET = os.path.join(BINARY_DIR, "proto", "gen", "batchd_descriptors.pb")
GRPC_PROTO = "/usr/share/grpc-proto"
TIMEOUT = 10
ALL_SERVICES = ["batch.v1.BatchService", "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]


# ---- message classes from descriptor pools ----------------------------------------------

class Types:
    """Message classes of one pool (one factory per pool, so nested types share classes)."""

    def __init__(self, pool):
        self.pool = pool
        self.factory = None if hasattr(message_factory, "GetMessageClass") else message_factory.MessageFactory(pool)

    def __call__(self, full_name):
        desc = self.pool.FindMessageTypeByName(full_name)
        if self.factory is None:
            return message_factory.GetMessageClass(desc)
        return self.factory.GetPrototype(desc)


def protocol_types(tmp):
    """The reflection protocol, from the client's own copy of its .proto files."""
    from grpc_tools import protoc
    out = os.path.join(tmp, "protocol.pb")
    rc = protoc.main(["protoc", "-I" + GRPC_PROTO, "--include_imports", "--descriptor_set_out=" + out,
                      "grpc/reflection/v1/reflection.proto", "grpc/reflection/v1alpha/reflection.proto"])
    if rc != 0:
        sys.exit("grpc_tools.protoc failed (%d)" % rc)
    pool = descriptor_pool.DescriptorPool()
    with open(out, "rb") as f:
        for fd in descriptor_pb2.FileDescriptorSet.FromString(f.read()).file:
            pool.Add(fd)
    return Types(pool)


# ---- processes ----------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Every process a test class starts; stop_all ends them whatever happened."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []

    def upstream(self):
        port_file = os.path.join(self.tmp, "upstream-%d.port" % len(self.procs))
        p = subprocess.Popen([UPSTREAM, "--port", "0", "--port-file", port_file], stdout=subprocess.DEVNULL)
        self.procs.append(p)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if os.path.exists(port_file):
                with open(port_file) as f:
                    text = f.read().strip()
                if text:
                    return "http://127.0.0.1:" + text
            if p.poll() is not None:
                raise RuntimeError("batchd-upstream exited with %d" % p.returncode)
            time.sleep(0.02)
        raise RuntimeError("batchd-upstream did not write its port")

    def batchd(self, *flags):
        """(process, address) of a batchd that accepts calls. batchd does not say which port
        it bound, so one is picked here; another process may take it first: try again."""
        for _ in range(5):
            addr = "127.0.0.1:%d" % free_port()
            p = subprocess.Popen([BATCHD, "--listen", addr, "--log-level", "warn"] + list(flags))
            self.procs.append(p)
            with grpc.insecure_channel(addr) as ch:
                try:
                    grpc.channel_ready_future(ch).result(timeout=TIMEOUT)
                    return p, addr
                except grpc.FutureTimeoutError:
                    pass
            if p.poll() is None:
                raise RuntimeError("batchd at %s does not accept calls" % addr)
        raise RuntimeError("batchd did not start")

    def stop_all(self):
        """Stops everything (SIGTERM, then SIGKILL after 15 s) and returns a complaint for
        each batchd that did not exit 0: a graceful stop must, and under the sanitizers a
        leak or an error changes the exit status."""
        bad = []
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            if p.args[0] == BATCHD and p.returncode != 0:
                bad.append("batchd %s exited with %d" % (p.args[2], p.returncode))
        self.procs = []
        return bad


# ---- the reflection client ----------------------------------------------------------------

class Reflector:
    def __init__(self, proto, channel, version):
        pkg = "grpc.reflection." + version
        self.Request = proto(pkg + ".ServerReflectionRequest")
        self.ExtensionRequest = proto(pkg + ".ExtensionRequest")
        response = proto(pkg + ".ServerReflectionResponse")
        self.method = channel.stream_stream("/%s.ServerReflection/ServerReflectionInfo" % pkg,
                                            request_serializer=lambda m: m.SerializeToString(),
                                            response_deserializer=response.FromString)

    def ask(self, *requests):
        """Answers to requests sent on one stream, in order."""
        return list(self.method(iter(requests), timeout=TIMEOUT))

    def ask1(self, **fields):
        answers = self.ask(self.Request(**fields))
        assert len(answers) == 1, answers
        return answers[0]

    def files(self, **fields):
        """The FileDescriptorProtos of a file answer, in the order sent."""
        r = self.ask1(**fields)
        assert r.WhichOneof("message_response") == "file_descriptor_response", r
        return [descriptor_pb2.FileDescriptorProto.FromString(b)
                for b in r.file_descriptor_response.file_descriptor_proto], r


def pool_of(files):
    """A pool holding files, added in the order the server promises: the first file is the
    one asked for, the rest come each after its imports. pool.Add refuses a file whose
    imports are not in yet, so a wrong order fails here."""
    pool = descriptor_pool.DescriptorPool()
    for fd in files[1:] + files[:1]:
        pool.Add(fd)
    return pool


def merged_pool(*answers):
    """One pool from several file answers, files deduplicated by name, imports first."""
    protos = {}
    for files in answers:
        for fd in files:
            protos.setdefault(fd.name, fd)
    pool, added = descriptor_pool.DescriptorPool(), set()

    def add(name):
        if name in added:
            return
        for dep in protos[name].dependency:
            add(dep)
        pool.Add(protos[name])
        added.add(name)
    for name in protos:
        add(name)
    return pool


def unary(channel, path, request, response_cls=None):
    return channel.unary_unary(path, request_serializer=lambda m: m if isinstance(m, bytes) else m.SerializeToString(),
                               response_deserializer=response_cls.FromString if response_cls else None)(
        request, timeout=TIMEOUT)


class ReflectionInterop(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="reflection-interop-")
        cls.proto = protocol_types(cls.tmp.name)
        cls.procs = Processes(cls.tmp.name)
        try:
            cls.upstream_url = cls.procs.upstream()
            cls.batchd, cls.addr = cls.procs.batchd("--target", "api=" + cls.upstream_url,
                                                    "--max-items", "3", "--max-watchers", "1")
            cls.channel = grpc.insecure_channel(cls.addr)
            cls.v1 = Reflector(cls.proto, cls.channel, "v1")
            cls.v1alpha = Reflector(cls.proto, cls.channel, "v1alpha")
            # The batch API and the error details, learnt through reflection only.
            batch_files, _ = cls.v1.files(file_containing_symbol="batch.v1.BatchService")
            details_files, _ = cls.v1.files(file_containing_symbol="google.rpc.ErrorInfo")
            cls.api = Types(merged_pool(batch_files, details_files))
        except BaseException:
            cls.procs.stop_all()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        bad = cls.procs.stop_all()
        cls.tmp.cleanup()
        if bad:
            raise AssertionError("; ".join(bad))

    # ---- the protocol --------------------------------------------------------------------

    def test_list_services_v1_and_v1alpha(self):
        for refl in (self.v1, self.v1alpha):
            r = refl.ask1(list_services="")
            self.assertEqual(r.WhichOneof("message_response"), "list_services_response")
            self.assertEqual([s.name for s in r.list_services_response.service], ALL_SERVICES)
            self.assertEqual(r.original_request.WhichOneof("message_request"), "list_services")

    def test_file_containing_symbol_for_every_kind_of_symbol(self):
        cases = [
            ("batch.v1.BatchService", "batch/v1/batch.proto", "service"),
            ("batch.v1.BatchService.SubmitBatch", "batch/v1/batch.proto", "method"),
            ("batch.v1.SubmitBatchRequest", "batch/v1/batch.proto", "message"),
            ("batch.v1.Operation.HeadersEntry", "batch/v1/batch.proto", "message"),
            ("batch.v1.BatchState", "batch/v1/batch.proto", "enum"),
            ("batch.v1.ITEM_STATE_FAILED", "batch/v1/batch.proto", "enum value"),
            ("google.rpc.BadRequest.FieldViolation", "google/rpc/error_details.proto", "message"),
            ("google.protobuf.Struct", "google/protobuf/struct.proto", "message"),
            ("grpc.health.v1.Health", "grpc/health/v1/health.proto", "service"),
            ("grpc.health.v1.HealthCheckResponse.ServingStatus", "grpc/health/v1/health.proto", "enum"),
            ("grpc.reflection.v1.ServerReflection", "grpc/reflection/v1/reflection.proto", "service"),
            ("grpc.reflection.v1alpha.ServerReflection", "grpc/reflection/v1alpha/reflection.proto", "service"),
        ]
        for refl in (self.v1, self.v1alpha):
            for symbol, filename, kind in cases:
                with self.subTest(symbol=symbol, version=refl.Request.DESCRIPTOR.full_name):
                    files, r = refl.files(file_containing_symbol=symbol)
                    self.assertEqual(files[0].name, filename, "the file asked for comes first")
                    self.assertEqual(r.original_request.file_containing_symbol, symbol)
                    pool = pool_of(files)
                    self.assertEqual(pool.FindFileContainingSymbol(symbol).name, filename)
                    if kind == "service":
                        self.assertEqual(pool.FindServiceByName(symbol).full_name, symbol)
                    elif kind == "method":
                        self.assertEqual(pool.FindMethodByName(symbol).input_type.full_name,
                                         "batch.v1.SubmitBatchRequest")
                    elif kind == "message":
                        self.assertEqual(pool.FindMessageTypeByName(symbol).full_name, symbol)
                    elif kind == "enum":
                        self.assertEqual(pool.FindEnumTypeByName(symbol).full_name, symbol)

    def test_batch_proto_comes_with_every_import(self):
        files, _ = self.v1.files(file_containing_symbol="batch.v1.BatchService")
        self.assertEqual(sorted(fd.name for fd in files), [
            "batch/v1/batch.proto", "google/protobuf/any.proto", "google/protobuf/duration.proto",
            "google/protobuf/struct.proto", "google/protobuf/timestamp.proto", "google/rpc/status.proto"])
        # Comments travel too (grpcurl's describe prints them).
        self.assertTrue(files[0].source_code_info.location)

    def test_answers_are_the_bytes_protoc_wrote(self):
        with open(BUILD_SET, "rb") as f:
            protoc_set = f.read()
        for symbol in ("batch.v1.BatchService", "google.rpc.BadRequest", "grpc.health.v1.Health"):
            r = self.v1.ask1(file_containing_symbol=symbol)
            for raw in r.file_descriptor_response.file_descriptor_proto:
                self.assertIn(raw, protoc_set, "not a verbatim FileDescriptorProto of protoc's set")

    def test_file_by_filename(self):
        for refl in (self.v1, self.v1alpha):
            files, _ = refl.files(file_by_filename="batch/v1/batch.proto")
            self.assertEqual(files[0].name, "batch/v1/batch.proto")
            self.assertEqual(len(files), 6)
            files, _ = refl.files(file_by_filename="google/protobuf/struct.proto")
            self.assertEqual([fd.name for fd in files], ["google/protobuf/struct.proto"])

    def test_unknown_names_get_not_found_error_responses_in_the_stream(self):
        for refl in (self.v1, self.v1alpha):
            requests = [
                refl.Request(file_containing_symbol="batch.v1.NoSuchThing"),
                refl.Request(file_by_filename="batch/v1/nope.proto"),
                refl.Request(file_containing_extension=refl.ExtensionRequest(
                    containing_type="batch.v1.Operation", extension_number=1000)),
                refl.Request(all_extension_numbers_of_type="batch.v1.NoSuchMessage"),
                refl.Request(file_containing_symbol="batch.v1.Batch"),  # still answered after errors
            ]
            answers = refl.ask(*requests)  # the call itself ends OK
            self.assertEqual(len(answers), 5)
            for a in answers[:4]:
                self.assertEqual(a.WhichOneof("message_response"), "error_response", a)
                self.assertEqual(a.error_response.error_code, grpc.StatusCode.NOT_FOUND.value[0])
                self.assertTrue(a.error_response.error_message)
            self.assertEqual(answers[4].WhichOneof("message_response"), "file_descriptor_response")
            for req, a in zip(requests, answers):
                self.assertEqual(a.original_request, req)

    def test_all_extension_numbers_of_a_known_message(self):
        for refl in (self.v1, self.v1alpha):
            r = refl.ask1(all_extension_numbers_of_type="batch.v1.Operation")
            self.assertEqual(r.WhichOneof("message_response"), "all_extension_numbers_response")
            self.assertEqual(r.all_extension_numbers_response.base_type_name, "batch.v1.Operation")
            self.assertEqual(list(r.all_extension_numbers_response.extension_number), [])

    # ---- using what reflection returned -------------------------------------------------------

    def submit_with_reflected_types(self, refl):
        files, _ = refl.files(file_containing_symbol="batch.v1.BatchService")
        types = Types(pool_of(files))
        method = types.pool.FindMethodByName("batch.v1.BatchService.SubmitBatch")
        request_cls, response_cls = types(method.input_type.full_name), types(method.output_type.full_name)
        request = json_format.ParseDict({"operations": [
            {"id": "post", "method": "POST", "path": "/echo", "json": {"name": "Ada", "tags": ["x", 1.5, None]}},
            {"id": "get", "method": "GET", "path": "/users/7"},
        ]}, request_cls())
        response = unary(self.channel, "/batch.v1.BatchService/SubmitBatch", request, response_cls)
        results = {r.id: r for r in response.results}
        self.assertEqual(set(results), {"post", "get"})
        # ItemResult.json is the response body as JSON, not only base64 bytes.
        get = json_format.MessageToDict(results["get"], preserving_proto_field_name=True)
        self.assertEqual(get["json"], {"ok": True, "status": 200, "method": "GET", "path": "/users/7"})
        echo = json_format.MessageToDict(results["post"].json)
        self.assertEqual(echo["method"], "POST")
        self.assertEqual(json.loads(echo["body"]), {"name": "Ada", "tags": ["x", 1.5, None]})
        self.assertEqual(echo["headers"]["content-type"], "application/json")
        printed = json.loads(json_format.MessageToJson(response))
        self.assertEqual(printed["batch"]["state"], "BATCH_STATE_SUCCEEDED")

    def test_submit_batch_through_v1_reflected_types(self):
        self.submit_with_reflected_types(self.v1)

    def test_submit_batch_through_v1alpha_reflected_types(self):
        self.submit_with_reflected_types(self.v1alpha)

    # ---- rich error details, decoded with reflected google.rpc types ---------------------------

    def details(self, err):
        """{detail type name: message} of a failed call, after checking the google.rpc.Status
        against the call's own status and that ErrorInfo (domain batchd) is there."""
        self.assertIsInstance(err, grpc.RpcError)
        trailers = dict(err.trailing_metadata() or ())
        self.assertIn("grpc-status-details-bin", trailers, "no details for %s" % err.code())
        status = self.api("google.rpc.Status").FromString(trailers["grpc-status-details-bin"])
        self.assertEqual(status.code, err.code().value[0])
        self.assertEqual(status.message, err.details())
        self.assertLess(len(err.details()), 200, "messages travel in headers: keep them short")
        out = {}
        for any_msg in status.details:
            name = any_msg.type_url.split("/")[-1]
            out[name] = self.api(name).FromString(any_msg.value)
        self.assertIn("google.rpc.ErrorInfo", out)
        self.assertEqual(out["google.rpc.ErrorInfo"].domain, "batchd")
        return out

    def fails(self, code, reason, call):
        with self.assertRaises(grpc.RpcError) as caught:
            call()
        self.assertEqual(caught.exception.code(), code, caught.exception.details())
        d = self.details(caught.exception)
        self.assertEqual(d["google.rpc.ErrorInfo"].reason, reason)
        return d

    def req(self, name, **fields):
        return self.api(name)(**fields)

    def call(self, method, request, response="batch.v1.Batch"):
        return lambda: unary(self.channel, "/batch.v1.BatchService/" + method, request, self.api(response))

    def stream_first(self, method, request, response="batch.v1.BatchEvent"):
        return lambda: next(self.channel.unary_stream(
            "/batch.v1.BatchService/" + method, request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=self.api(response).FromString)(request, timeout=TIMEOUT))

    def submit(self, body):
        return unary(self.channel, "/batch.v1.BatchService/SubmitBatch",
                     json_format.ParseDict(body, self.req("batch.v1.SubmitBatchRequest")),
                     self.api("batch.v1.SubmitBatchResponse"))

    def test_unknown_method_is_unimplemented_at_once(self):
        start = time.monotonic()
        self.fails(grpc.StatusCode.UNIMPLEMENTED, "UNKNOWN_METHOD",
                   lambda: unary(self.channel, "/batch.v1.BatchService/NoSuchMethod", b""))
        self.assertLess(time.monotonic() - start, 5)

    def test_unknown_batch_ids_are_not_found(self):
        missing = self.req("batch.v1.GetBatchRequest", batch_id="01ARZ3NDEKTSV4RRFFQ69G5FAV")
        d = self.fails(grpc.StatusCode.NOT_FOUND, "BATCH_NOT_FOUND", self.call("GetBatch", missing))
        self.assertEqual(d["google.rpc.ErrorInfo"].metadata["batch_id"], "01ARZ3NDEKTSV4RRFFQ69G5FAV")
        cancel = self.req("batch.v1.CancelBatchRequest", batch_id="01ARZ3NDEKTSV4RRFFQ69G5FAV")
        self.fails(grpc.StatusCode.NOT_FOUND, "BATCH_NOT_FOUND", self.call("CancelBatch", cancel))
        watch = self.req("batch.v1.WatchBatchRequest", batch_id="01ARZ3NDEKTSV4RRFFQ69G5FAV")
        self.fails(grpc.StatusCode.NOT_FOUND, "BATCH_NOT_FOUND", self.stream_first("WatchBatch", watch))
        results = self.req("batch.v1.ListResultsRequest", batch_id="01ARZ3NDEKTSV4RRFFQ69G5FAV")
        self.fails(grpc.StatusCode.NOT_FOUND, "BATCH_NOT_FOUND",
                   self.stream_first("ListResults", results, "batch.v1.ItemResult"))

    def test_validation_errors_carry_bad_request(self):
        d = self.fails(grpc.StatusCode.INVALID_ARGUMENT, "BATCH_ID_REQUIRED",
                       self.call("GetBatch", self.req("batch.v1.GetBatchRequest")))
        self.assertEqual([v.field for v in d["google.rpc.BadRequest"].field_violations], ["batch_id"])

        bad = json_format.ParseDict({"operations": [{"method": "FETCH", "path": "/ok"},
                                                    {"method": "GET", "path": "no-slash"}]},
                                    self.req("batch.v1.SubmitBatchRequest"))
        d = self.fails(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_BATCH",
                       self.call("SubmitBatch", bad, "batch.v1.SubmitBatchResponse"))
        self.assertEqual([v.field for v in d["google.rpc.BadRequest"].field_violations],
                         ["operations[0].method", "operations[1].path"])

        token = self.req("batch.v1.ListBatchesRequest", page_token="not-a-token")
        d = self.fails(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN",
                       self.call("ListBatches", token, "batch.v1.ListBatchesResponse"))
        self.assertEqual(d["google.rpc.BadRequest"].field_violations[0].field, "page_token")

        # Bytes that are no GetBatchRequest (field 1 claims 9 bytes, 1 follows).
        self.fails(grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST",
                   lambda: unary(self.channel, "/batch.v1.BatchService/GetBatch", b"\x0a\x09x"))

        done = self.submit({"operations": [{"method": "GET", "path": "/ok"}], "options": {"mode": "MODE_SYNC"}})
        negative = json_format.ParseDict({"batch_id": done.batch.id, "min_interval": "-1s"},
                                         self.req("batch.v1.WatchBatchRequest"))
        d = self.fails(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_MIN_INTERVAL",
                       self.stream_first("WatchBatch", negative))
        self.assertEqual(d["google.rpc.BadRequest"].field_violations[0].field, "min_interval")
        beyond = self.req("batch.v1.WatchBatchRequest", batch_id=done.batch.id, after_sequence=5)
        d = self.fails(grpc.StatusCode.OUT_OF_RANGE, "SEQUENCE_OUT_OF_RANGE", self.stream_first("WatchBatch", beyond))
        self.assertEqual(d["google.rpc.BadRequest"].field_violations[0].field, "after_sequence")

    def test_limits_carry_quota_failure(self):
        four = {"operations": [{"method": "GET", "path": "/ok"}] * 4}
        d = self.fails(grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_ITEMS",
                       lambda: self.submit(four))
        self.assertEqual(d["google.rpc.QuotaFailure"].violations[0].subject, "operations")
        self.assertEqual(d["google.rpc.ErrorInfo"].metadata["limit"], "3")
        self.assertNotIn("google.rpc.RetryInfo", d, "the same batch will never fit: no retry advice")

        slow = self.submit({"operations": [{"method": "GET", "path": "/slow?delay_ms=5000"}],
                            "options": {"mode": "MODE_ASYNC"}})
        watch = self.req("batch.v1.WatchBatchRequest", batch_id=slow.batch.id)
        first = self.channel.unary_stream("/batch.v1.BatchService/WatchBatch",
                                          request_serializer=lambda m: m.SerializeToString(),
                                          response_deserializer=self.api("batch.v1.BatchEvent").FromString)(
            watch, timeout=TIMEOUT)
        try:
            next(first)
            d = self.fails(grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_WATCHERS",
                           self.stream_first("WatchBatch", watch))
            self.assertEqual(d["google.rpc.QuotaFailure"].violations[0].subject, "watchers")
            self.assertGreater(d["google.rpc.RetryInfo"].retry_delay.ToNanoseconds(), 0)
        finally:
            first.cancel()
            unary(self.channel, "/batch.v1.BatchService/CancelBatch",
                  self.req("batch.v1.CancelBatchRequest", batch_id=slow.batch.id), self.api("batch.v1.Batch"))

    def test_health_errors_carry_details(self):
        # The health messages are learnt through reflection too.
        files, _ = self.v1.files(file_containing_symbol="grpc.health.v1.Health")
        health = Types(pool_of(files))
        request = health("grpc.health.v1.HealthCheckRequest")
        response = health("grpc.health.v1.HealthCheckResponse")
        d = self.fails(grpc.StatusCode.NOT_FOUND, "UNKNOWN_SERVICE",
                       lambda: unary(self.channel, "/grpc.health.v1.Health/Check",
                                     request(service="no.such.Service"), response))
        self.assertEqual(d["google.rpc.ErrorInfo"].metadata["service"], "no.such.Service")
        watch = self.channel.unary_stream("/grpc.health.v1.Health/Watch",
                                          request_serializer=lambda m: m.SerializeToString(),
                                          response_deserializer=response.FromString)
        first = watch(request(service=""), timeout=TIMEOUT)
        try:
            self.assertEqual(next(first).status, 1)  # SERVING
            d = self.fails(grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_WATCHERS",
                           lambda: next(watch(request(service=""), timeout=TIMEOUT)))
            self.assertIn("google.rpc.QuotaFailure", d)
            self.assertIn("google.rpc.RetryInfo", d)
        finally:
            first.cancel()

    # ---- other servers -------------------------------------------------------------------------

    def test_no_reflection_flag_turns_both_versions_off(self):
        _, addr = self.procs.batchd("--target", "api=" + self.upstream_url, "--no-reflection")
        with grpc.insecure_channel(addr) as ch:
            for version in ("v1", "v1alpha"):
                refl = Reflector(self.proto, ch, version)
                with self.assertRaises(grpc.RpcError) as caught:
                    refl.ask1(list_services="")
                self.assertEqual(caught.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
                self.assertEqual(self.details(caught.exception)["google.rpc.ErrorInfo"].reason, "UNKNOWN_METHOD")

    def test_an_open_reflection_stream_ends_unavailable_on_sigterm(self):
        proc, addr = self.procs.batchd("--target", "api=" + self.upstream_url)
        with grpc.insecure_channel(addr) as ch:
            refl = Reflector(self.proto, ch, "v1")
            requests = queue.Queue()
            answers = refl.method(iter(requests.get, None), timeout=TIMEOUT)
            requests.put(refl.Request(list_services=""))
            self.assertEqual(len(next(answers).list_services_response.service), 4)
            proc.send_signal(signal.SIGTERM)
            with self.assertRaises(grpc.RpcError) as caught:
                next(answers)
            requests.put(None)
            self.assertEqual(caught.exception.code(), grpc.StatusCode.UNAVAILABLE)
            d = self.details(caught.exception)
            self.assertEqual(d["google.rpc.ErrorInfo"].reason, "SHUTTING_DOWN")
            self.assertIn("google.rpc.RetryInfo", d)
        self.assertEqual(proc.wait(timeout=15), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
