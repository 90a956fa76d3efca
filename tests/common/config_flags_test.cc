#include "common/config_flags.h"

#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/duration.pb.h"
#include "gtest/gtest.h"
#include "proto/agent_config.pb.h"
#include "proto/coordinator_config.pb.h"

// Flags named like fields of the daemons' configs, as their main.cc define them.
ABSL_FLAG(std::string, listen, "127.0.0.1:0", "");
ABSL_FLAG(std::string, http_listen, "127.0.0.1:0", "");
ABSL_FLAG(uint64_t, host_bytes, uint64_t{1} << 30, "");
ABSL_FLAG(uint32_t, node_id, 0, "");
ABSL_FLAG(bool, leave_on_exit, true, "");
ABSL_FLAG(uint32_t, replication, 2, "");
ABSL_FLAG(double, high_watermark, 0.90, "");
// Of the wrong type for google.protobuf.FileOptions.java_package (a string).
ABSL_FLAG(int32_t, java_package, 0, "");
// google.protobuf.Duration.seconds has no presence.
ABSL_FLAG(int64_t, seconds, 0, "");

namespace kvf {
namespace {

GivenFlags Scan(std::vector<const char*> args) {
  args.insert(args.begin(), "prog");
  return GivenFlags::Scan(static_cast<int>(args.size()), args.data());
}

class ConfigFlagsTest : public ::testing::Test {
 protected:
  // A textproto file holding `text`.
  std::string File(const std::string& text) {
    std::ofstream(path_) << text;
    return path_;
  }
  void TearDown() override { ::unlink(path_.c_str()); }

 private:
  absl::FlagSaver saver_;  // every test starts from the defaults
  const std::string path_ = ::testing::TempDir() + "config_flags_test.textproto";
};

TEST_F(ConfigFlagsTest, ScanReadsArgvAsAbseilDoes) {
  const GivenFlags g = Scan({"--listen=a:1", "-http_listen", "b:2", "--noleave_on_exit", "pos",
                             "--no_such_flag=1", "--host_bytes", "--replication=3", "--",
                             "--node_id=4"});
  EXPECT_TRUE(g.Given("listen"));
  EXPECT_TRUE(g.Given("http_listen"));
  EXPECT_TRUE(g.Given("leave_on_exit"));
  EXPECT_TRUE(g.Given("host_bytes"));
  EXPECT_FALSE(g.Given("replication")) << "the value of --host_bytes, not a flag";
  EXPECT_FALSE(g.Given("node_id")) << "after --";
  EXPECT_FALSE(g.Given("no_such_flag"));
}

TEST_F(ConfigFlagsTest, AFlagSetOtherwiseCountsAsGiven) {
  // As --flagfile or --fromenv would, which Scan does not read.
  absl::SetFlag(&FLAGS_node_id, 7);
  EXPECT_TRUE(Scan({}).Given("node_id"));
  EXPECT_FALSE(Scan({}).Given("listen"));
}

TEST_F(ConfigFlagsTest, UnsetFieldsTakeTheFlagDefaults) {
  proto::AgentConfig c;
  ASSERT_TRUE(LoadConfig("", Scan({}), &c).ok());
  EXPECT_EQ(c.listen(), "127.0.0.1:0");
  EXPECT_EQ(c.host_bytes(), uint64_t{1} << 30);
  EXPECT_TRUE(c.leave_on_exit());
  EXPECT_FALSE(c.has_coordinator()) << "no flag of that name here";
}

TEST_F(ConfigFlagsTest, ACommentNamingAFieldDoesNotSetIt) {
  proto::AgentConfig c;
  ASSERT_TRUE(LoadConfig(File("# leave_on_exit: false would keep the node's ranges\n"
                              "listen: \"10.0.0.1:7800\"  # not leave_on_exit\n"),
                         Scan({}), &c)
                  .ok());
  EXPECT_TRUE(c.leave_on_exit());
  EXPECT_EQ(c.listen(), "10.0.0.1:7800");
}

TEST_F(ConfigFlagsTest, TheFileSetsFalseZeroAndEmpty) {
  proto::AgentConfig c;
  ASSERT_TRUE(
      LoadConfig(File("leave_on_exit: false\nhttp_listen: \"\"\nnode_id: 0\n"), Scan({}), &c).ok());
  EXPECT_FALSE(c.leave_on_exit());
  EXPECT_EQ(c.http_listen(), "");
  EXPECT_TRUE(c.has_node_id());
}

TEST_F(ConfigFlagsTest, AGivenFlagOverridesTheFileEvenAtItsDefault) {
  // The flags hold what absl::ParseCommandLine would leave; Scan sees the argv.
  absl::SetFlag(&FLAGS_leave_on_exit, true);
  proto::AgentConfig agent;
  ASSERT_TRUE(LoadConfig(File("leave_on_exit: false\nlisten: \"a:1\"\n"),
                         Scan({"--leave_on_exit"}), &agent)
                  .ok());
  EXPECT_TRUE(agent.leave_on_exit());
  EXPECT_EQ(agent.listen(), "a:1") << "--listen not given: the file's value stays";

  absl::SetFlag(&FLAGS_replication, 2);
  absl::SetFlag(&FLAGS_high_watermark, 0.75);
  proto::CoordinatorConfig coordinator;
  ASSERT_TRUE(LoadConfig(File("replication: 3\nhigh_watermark: 0.5\n"),
                         Scan({"--replication", "2", "--high_watermark=0.75"}), &coordinator)
                  .ok());
  EXPECT_EQ(coordinator.replication(), 2u);
  EXPECT_EQ(coordinator.high_watermark(), 0.75);
}

TEST_F(ConfigFlagsTest, Errors) {
  proto::AgentConfig agent;
  EXPECT_EQ(LoadConfig("/nonexistent/kvf.textproto", Scan({}), &agent).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(LoadConfig(File("no_such_field: 1\n"), Scan({}), &agent).code(),
            absl::StatusCode::kInvalidArgument);
  google::protobuf::FileOptions wrong_type;
  const absl::Status type = LoadConfig("", Scan({}), &wrong_type);
  EXPECT_EQ(type.code(), absl::StatusCode::kInternal);
  EXPECT_NE(type.message().find("--java_package"), absl::string_view::npos) << type;
  google::protobuf::Duration no_presence;
  EXPECT_EQ(LoadConfig("", Scan({}), &no_presence).code(), absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace kvf
