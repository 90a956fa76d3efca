// TLS for gRPC, end to end (docs/operating.md, "TLS and listen addresses"):
// a throwaway CA and a server certificate for 127.0.0.1/localhost made with
// the openssl CLI, a coordinator and agents serving gRPC over TLS with it
// (LocalCluster's tls_* options), and every kind of caller:
//  - a client with the CA puts and gets blocks byte-exact;
//  - a plaintext client and a client trusting another CA are refused with
//    UNAVAILABLE within the RPC deadline, not a hang;
//  - AgentControl answers only over TLS;
//  - kvfctl works with --tls_ca and exits "unreachable" without it;
//  - kvf-agent refuses to start on TLS files it cannot use;
//  - a drain completes: the coordinator hands migration tasks to the agents
//    over TLS (--agent_tls_ca), and the blocks stay readable (last: it
//    changes the suite's cluster).
// The agents joined and the cluster went active over TLS in SetUpTestSuite
// (agent -> coordinator verified with --tls_ca).
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "common/block_hash.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "proto/agent_control.grpc.pb.h"
#include "proto/auth.h"
#include "proto/channel.h"
#include "tests/cluster/local_cluster.h"
#include "tools/launch/spawn.h"

namespace kvf::testing {
namespace {

namespace fs = std::filesystem;
using launch::ChildProcess;
using launch::ExitStatus;
using launch::SpawnOptions;
using launch::Stdio;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool OnPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return false;
  for (absl::string_view dir : absl::StrSplit(path, ':', absl::SkipEmpty())) {
    if (::access((fs::path(std::string(dir)) / name).c_str(), X_OK) == 0) return true;
  }
  return false;
}

// Runs `argv` (argv[0] looked up in PATH when `search_path`) in `dir` with
// stdout and stderr captured; returns how it ended.
struct RunResult {
  ExitStatus exit;
  std::string out;
  std::string err;
};
absl::StatusOr<RunResult> RunCommand(std::vector<std::string> argv, const std::string& dir,
                                     bool search_path, absl::Duration timeout = absl::Seconds(60)) {
  static int n = 0;
  const std::string prefix = absl::StrCat(dir, "/run-", ::getpid(), "-", n++);
  SpawnOptions so;
  so.argv = std::move(argv);
  so.search_path = search_path;
  so.in = Stdio::Null();
  so.out = Stdio::File(prefix + ".out");
  so.err = Stdio::File(prefix + ".err");
  so.close_other_fds = true;
  absl::StatusOr<ChildProcess> child = ChildProcess::Spawn(so);
  if (!child.ok()) return child.status();
  std::optional<ExitStatus> exit = child->Wait(timeout);
  if (!exit) {
    child->Kill();
    return absl::DeadlineExceededError(
        absl::StrCat(so.argv[0], " did not finish within ", absl::FormatDuration(timeout)));
  }
  return RunResult{*exit, ReadAll(prefix + ".out"), ReadAll(prefix + ".err")};
}

// A CA, a second unrelated CA, and a server certificate and key signed by
// the first for IP 127.0.0.1 and DNS localhost; P-256 keys (fast to make).
struct Pki {
  std::string ca, other_ca, cert, key;
};

absl::StatusOr<Pki> MakePki(const std::string& dir) {
  auto openssl = [&](std::vector<std::string> args) -> absl::Status {
    args.insert(args.begin(), "openssl");
    absl::StatusOr<RunResult> r = RunCommand(args, dir, /*search_path=*/true);
    if (!r.ok()) return r.status();
    if (!r->exit.success()) {
      return absl::InternalError(
          absl::StrCat("openssl ", args[1], " ", r->exit.ToString(), ": ", r->err));
    }
    return absl::OkStatus();
  };
  const std::vector<std::string> kKey = {"-newkey", "ec", "-pkeyopt",
                                         "ec_paramgen_curve:prime256v1", "-nodes"};
  auto make_ca = [&](const std::string& name) -> absl::Status {
    std::vector<std::string> args = {"req", "-x509"};
    args.insert(args.end(), kKey.begin(), kKey.end());
    args.insert(args.end(), {"-keyout", dir + "/" + name + ".key", "-out",
                             dir + "/" + name + ".pem", "-days", "2", "-subj",
                             "/CN=kvf test " + name, "-addext", "basicConstraints=critical,CA:TRUE",
                             "-addext", "keyUsage=critical,keyCertSign,cRLSign"});
    return openssl(args);
  };
  if (absl::Status s = make_ca("ca"); !s.ok()) return s;
  if (absl::Status s = make_ca("other-ca"); !s.ok()) return s;
  std::vector<std::string> csr = {"req", "-new"};
  csr.insert(csr.end(), kKey.begin(), kKey.end());
  csr.insert(csr.end(), {"-keyout", dir + "/server.key", "-out", dir + "/server.csr", "-subj",
                         "/CN=localhost"});
  if (absl::Status s = openssl(csr); !s.ok()) return s;
  {
    std::ofstream ext(dir + "/server.ext");
    ext << "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        << "basicConstraints=CA:FALSE\n"
        << "keyUsage=critical,digitalSignature,keyEncipherment\n"
        << "extendedKeyUsage=serverAuth\n";
  }
  if (absl::Status s =
          openssl({"x509", "-req", "-in", dir + "/server.csr", "-CA", dir + "/ca.pem", "-CAkey",
                   dir + "/ca.key", "-CAcreateserial", "-out", dir + "/server.pem", "-days", "2",
                   "-extfile", dir + "/server.ext"});
      !s.ok()) {
    return s;
  }
  return Pki{dir + "/ca.pem", dir + "/other-ca.pem", dir + "/server.pem", dir + "/server.key"};
}

NamespaceSpec TestSpec() {
  NamespaceSpec s;
  s.model_id = "tls-test";
  s.layout = KvLayout{.num_layers = 2,
                      .num_kv_heads = 2,
                      .head_dim = 64,
                      .block_tokens = 16,
                      .dtype = DType::kFp16};  // 16 KiB blocks
  s.segment_blocks = 4;
  return s;
}

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
#ifdef KVF_AGENT_BIN
    if (std::string(KVF_AGENT_BIN).empty()) return;
#else
    return;
#endif
    if (!OnPath("openssl")) {
      skip_reason_ = new std::string("the openssl CLI is not on PATH");
      return;
    }
    std::string tmpl = (fs::temp_directory_path() / "kvf-tls-test-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) {
      setup_error_ = new std::string("mkdtemp failed");
      return;
    }
    dir_ = new std::string(tmpl);
    absl::StatusOr<Pki> pki = MakePki(*dir_);
    if (!pki.ok()) {
      setup_error_ = new std::string(pki.status().ToString());
      return;
    }
    pki_ = new Pki(*pki);
    LocalClusterOptions o;
    o.agents = 3;
    o.replication = 2;
    o.host = "127.0.0.1";
    o.tls_cert = pki_->cert;
    o.tls_key = pki_->key;
    o.tls_ca = pki_->ca;
    absl::StatusOr<std::unique_ptr<LocalCluster>> c = LocalCluster::Start(o);
    if (!c.ok()) {
      setup_error_ = new std::string(c.status().ToString());
      return;
    }
    cluster_ = c->release();
  }

  static void TearDownTestSuite() {
    delete cluster_;  // kills the daemons by pid
    cluster_ = nullptr;
    if (dir_ != nullptr && std::getenv("KVF_KEEP_CLUSTER_DIR") == nullptr) {
      std::error_code ec;
      fs::remove_all(*dir_, ec);
    }
    delete dir_;
    delete pki_;
    delete skip_reason_;
    delete setup_error_;
    dir_ = nullptr;
    pki_ = nullptr;
    skip_reason_ = nullptr;
    setup_error_ = nullptr;
  }

  void SetUp() override {
    if (skip_reason_ != nullptr) GTEST_SKIP() << *skip_reason_;
    if (cluster_ == nullptr && setup_error_ == nullptr) {
      GTEST_SKIP() << "kvf-agent is not built; skipping cluster tests";
    }
    ASSERT_EQ(setup_error_, nullptr) << *setup_error_;
  }

  void TearDown() override {
    if (HasFailure() && cluster_ != nullptr) {
      std::cerr << "---- coordinator.err\n"
                << cluster_->TailLog(cluster_->dir() + "/coordinator") << "\n";
      for (const AgentProcess& a : cluster_->agents()) {
        std::cerr << "---- " << a.log_prefix << ".err\n" << cluster_->TailLog(a.log_prefix) << "\n";
      }
    }
  }

  static ClientOptions Options(const std::string& tls_ca_file) {
    ClientOptions o;
    o.coordinator = cluster_->coordinator();
    o.token = cluster_->token();
    o.tls_ca_file = tls_ca_file;
    return o;
  }

  static LocalCluster* cluster_;
  static Pki* pki_;
  static std::string* dir_;
  static std::string* skip_reason_;
  static std::string* setup_error_;
};

LocalCluster* TlsTest::cluster_ = nullptr;
Pki* TlsTest::pki_ = nullptr;
std::string* TlsTest::dir_ = nullptr;
std::string* TlsTest::skip_reason_ = nullptr;
std::string* TlsTest::setup_error_ = nullptr;

// Blocks of one sequence (the tokens are seeded by `seed`), their bytes
// seeded too, written through and read back from a client.
struct Blocks {
  Namespace ns;
  std::vector<BlockKey> chain;
  std::vector<std::vector<uint8_t>> data;
};

void MakeBlocks(Client& client, uint32_t seed, size_t count, Blocks* out) {
  absl::StatusOr<Namespace> ns = client.RegisterNamespace(TestSpec());
  ASSERT_TRUE(ns.ok()) << ns.status();
  out->ns = *ns;
  std::vector<uint32_t> tokens(count * ns->spec().layout.block_tokens);
  for (size_t i = 0; i < tokens.size(); ++i) {
    tokens[i] = static_cast<uint32_t>(i * 2654435761u) ^ seed;
  }
  absl::StatusOr<std::vector<BlockKey>> chain =
      HashSequence(ns->spec().hash, tokens, ns->spec().layout.block_tokens);
  ASSERT_TRUE(chain.ok()) << chain.status();
  out->chain = *chain;
  const size_t bytes = ns->BlockBytes();
  out->data.assign(count, std::vector<uint8_t>(bytes));
  for (size_t b = 0; b < count; ++b) {
    for (size_t i = 0; i < bytes; ++i) {
      out->data[b][i] = static_cast<uint8_t>(b * 131 + i * 7 + (i >> 8) + seed);
    }
  }
}

void PutBlocks(Client& client, const Blocks& blocks) {
  std::vector<ConstBlockBuffer> src;
  for (const auto& d : blocks.data) src.push_back({d.data(), d.size()});
  absl::StatusOr<BatchResult> put = client.BatchPut(blocks.ns, blocks.chain, 0, src);
  ASSERT_TRUE(put.ok()) << put.status();
  ASSERT_TRUE(put->all_ok()) << put->FirstError();
}

void ExpectBlocksByteExact(Client& client, const Blocks& blocks) {
  std::vector<std::vector<uint8_t>> back(blocks.data.size(),
                                         std::vector<uint8_t>(blocks.ns.BlockBytes(), 0xee));
  std::vector<BlockBuffer> dst;
  for (auto& b : back) dst.push_back({b.data(), b.size()});
  absl::StatusOr<BatchResult> get = client.BatchGet(blocks.ns, blocks.chain, 0, dst);
  ASSERT_TRUE(get.ok()) << get.status();
  ASSERT_TRUE(get->all_ok()) << get->FirstError();
  for (size_t b = 0; b < back.size(); ++b) {
    EXPECT_EQ(get->blocks[b].size, back[b].size()) << "block " << b;
    EXPECT_TRUE(back[b] == blocks.data[b]) << "block " << b << " differs";
  }
}

TEST_F(TlsTest, ClientWithTheCaPutsAndGetsBlocksByteExact) {
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(Options(pki_->ca));
  ASSERT_TRUE(client.ok()) << client.status();
  Blocks blocks;
  ASSERT_NO_FATAL_FAILURE(MakeBlocks(**client, 1, 16, &blocks));
  ASSERT_NO_FATAL_FAILURE(PutBlocks(**client, blocks));
  ExpectBlocksByteExact(**client, blocks);
}

// Connect must fail within the RPC deadline with UNAVAILABLE and say what to
// check.
void ExpectRefused(const ClientOptions& options, const std::string& hint) {
  const absl::Time start = absl::Now();
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(options);
  const absl::Duration took = absl::Now() - start;
  ASSERT_FALSE(client.ok()) << "connected without a usable TLS setup";
  std::cout << "refused after " << took << ": " << client.status() << "\n";
  EXPECT_TRUE(absl::IsUnavailable(client.status())) << client.status();
  EXPECT_TRUE(absl::StrContains(client.status().message(), options.coordinator)) << client.status();
  EXPECT_TRUE(absl::StrContains(client.status().message(), hint)) << client.status();
  EXPECT_LT(took, options.rpc_timeout) << "waited out the deadline instead of failing";
}

TEST_F(TlsTest, PlaintextClientIsRefusedWithUnavailable) {
  ClientOptions o = Options("");
  o.rpc_timeout = absl::Seconds(10);
  ExpectRefused(o, "If it serves TLS, set tls_ca_file");
}

TEST_F(TlsTest, ClientTrustingAnotherCaIsRefusedWithUnavailable) {
  ClientOptions o = Options(pki_->other_ca);
  o.rpc_timeout = absl::Seconds(10);
  ExpectRefused(o, "tls_ca_file signs");
}

TEST_F(TlsTest, ClientWithAnUnreadableCaFileFailsAtOnce) {
  absl::StatusOr<std::unique_ptr<Client>> missing =
      Client::Connect(Options(*dir_ + "/no-such-ca.pem"));
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(absl::IsNotFound(missing.status())) << missing.status();
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "no-such-ca.pem")) << missing.status();
  // A key is not a certificate.
  absl::StatusOr<std::unique_ptr<Client>> not_a_cert = Client::Connect(Options(pki_->key));
  ASSERT_FALSE(not_a_cert.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(not_a_cert.status())) << not_a_cert.status();
}

TEST_F(TlsTest, AgentControlAnswersOnlyOverTls) {
  ASSERT_FALSE(cluster_->agents().empty());
  const std::string address = cluster_->agents()[0].control;
  auto call = [&](std::shared_ptr<grpc::ChannelCredentials> creds) {
    auto stub = proto::AgentControl::NewStub(OpenChannel(address, std::move(creds)));
    grpc::ClientContext ctx;
    AddClusterToken(&ctx, cluster_->token());
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    proto::EvictionCutoffRequest req;
    req.set_cutoff_ms(24ull * 3600 * 1000);  // a day: evicts nothing
    proto::EvictionCutoffResponse resp;
    return stub->ApplyEvictionCutoff(&ctx, req, &resp);
  };
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ca = ChannelCredentialsFor(pki_->ca);
  ASSERT_TRUE(ca.ok()) << ca.status();
  grpc::Status tls = call(*ca);
  EXPECT_TRUE(tls.ok()) << tls.error_code() << ": " << tls.error_message();
  grpc::Status plain = call(nullptr);
  EXPECT_EQ(plain.error_code(), grpc::StatusCode::UNAVAILABLE) << plain.error_message();
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> other =
      ChannelCredentialsFor(pki_->other_ca);
  ASSERT_TRUE(other.ok()) << other.status();
  grpc::Status wrong_ca = call(*other);
  EXPECT_EQ(wrong_ca.error_code(), grpc::StatusCode::UNAVAILABLE) << wrong_ca.error_message();
}

TEST_F(TlsTest, KvfctlWorksWithTlsCaAndIsRefusedWithout) {
#ifndef KVFCTL_BIN
  GTEST_SKIP() << "kvfctl is not built";
#else
  const std::vector<std::string> base = {KVFCTL_BIN, "--coordinator=" + cluster_->coordinator(),
                                         "--token_file=" + cluster_->token_file(),
                                         "--rpc_timeout=5s"};
  std::vector<std::string> with_ca = base;
  with_ca.push_back("--tls_ca=" + pki_->ca);
  with_ca.push_back("nodes");
  absl::StatusOr<RunResult> ok = RunCommand(with_ca, *dir_, false);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->exit.ShellCode(), 0) << ok->err;
  EXPECT_TRUE(absl::StrContains(ok->out, "active")) << ok->out;

  std::vector<std::string> without = base;
  without.push_back("nodes");
  absl::StatusOr<RunResult> plain = RunCommand(without, *dir_, false);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->exit.ShellCode(), 5) << plain->out << plain->err;  // unreachable
  EXPECT_TRUE(absl::StrContains(plain->err, "--tls_ca")) << plain->err;

  std::vector<std::string> wrong = base;
  wrong.push_back("--tls_ca=" + pki_->other_ca);
  wrong.push_back("nodes");
  absl::StatusOr<RunResult> other = RunCommand(wrong, *dir_, false);
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(other->exit.ShellCode(), 5) << other->out << other->err;
#endif
}

TEST_F(TlsTest, AgentRefusesTlsFilesItCannotUse) {
#ifndef KVF_AGENT_BIN
  GTEST_SKIP() << "kvf-agent is not built";
#else
  const std::string agent = KVF_AGENT_BIN;
  const std::vector<std::string> base = {agent, "--coordinator=" + cluster_->coordinator(),
                                         "--token_file=" + cluster_->token_file(),
                                         "--http_listen="};
  struct Case {
    std::vector<std::string> flags;
    int code;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{"--tls_cert=" + pki_->cert}, 2, "go together"},
      {{"--tls_ca=" + *dir_ + "/missing.pem"}, 1, "missing.pem"},
      {{"--tls_cert=" + pki_->key, "--tls_key=" + pki_->key}, 1, "no PEM CERTIFICATE"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = base;
    argv.insert(argv.end(), c.flags.begin(), c.flags.end());
    absl::StatusOr<RunResult> r = RunCommand(argv, *dir_, false);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->exit.ShellCode(), c.code) << c.flags[0] << ": " << r->err;
    EXPECT_TRUE(absl::StrContains(r->err, c.says)) << c.flags[0] << ": " << r->err;
  }
#endif
}

}  // namespace
}  // namespace kvf::testing

namespace kvf::testing {
namespace {

// Last in this file: it takes a node out of the suite's cluster.
TEST_F(TlsTest, DrainOverTlsCompletesAndKeepsBlocks) {
#ifndef KVFCTL_BIN
  GTEST_SKIP() << "kvfctl is not built";
#else
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(Options(pki_->ca));
  ASSERT_TRUE(client.ok()) << client.status();
  Blocks blocks;
  ASSERT_NO_FATAL_FAILURE(MakeBlocks(**client, 2, 32, &blocks));
  ASSERT_NO_FATAL_FAILURE(PutBlocks(**client, blocks));
  const NodeId node = cluster_->agents().back().node;
  absl::StatusOr<RunResult> drain =
      RunCommand({KVFCTL_BIN, "--coordinator=" + cluster_->coordinator(),
                  "--token_file=" + cluster_->token_file(), "--tls_ca=" + pki_->ca, "drain",
                  std::to_string(node), "--timeout=90s"},
                 *dir_, false, absl::Seconds(120));
  ASSERT_TRUE(drain.ok()) << drain.status();
  std::cout << drain->out;
  ASSERT_EQ(drain->exit.ShellCode(), 0) << drain->out << drain->err;
  ExpectBlocksByteExact(**client, blocks);
#endif
}

}  // namespace
}  // namespace kvf::testing
