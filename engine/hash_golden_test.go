package engine_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/orchestrator/orchestrator/engine"
)

// The golden hashes below were recorded from the encodings as they stand in
// stored databases and checkpoints; `orchestrator verify` recomputes them, so
// none of them may ever change. A failure here means an encoding changed.

// goldenPrev is a previous hash as the chains hold them: 64 hex digits.
const goldenPrev = "4955f00e3790b675e19328e1e5ae6cdd8c0085ad88d21a7013f82f84f688d0e2"

// goldenAt has nanoseconds, which the encoding drops past the microsecond,
// and a zone other than UTC, which it converts.
var goldenAt = time.Date(2025, 12, 31, 23, 59, 59, 999999999, time.FixedZone("east", 5*3600+30*60))

// goldenCase is one fully specified input and its recorded hash.
type goldenCase struct {
	name string
	got  string
	want string
}

// zeroFields is the SHA-256 of n empty fields: each an 8-byte length of 0,
// and an 8-byte 0 for a number. It checks the zero hashes without the code
// under test.
func zeroFields(n int) string {
	s := sha256.Sum256(make([]byte, 8*n))
	return hex.EncodeToString(s[:])
}

func checkGolden(t *testing.T, cases []goldenCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.got != c.want {
				t.Errorf("hash %s, recorded %s", c.got, c.want)
			}
		})
	}
}

func TestEvent_ComputeHash_Golden(t *testing.T) {
	t.Parallel()
	full := engine.Event{ID: 77, TenantID: "acme", RunID: "run-1", Seq: 3, Type: engine.EventTaskAttemptFailed,
		TaskID: "fetch", Attempt: 2, Actor: "key:0123456789abcdef:ci",
		Data: json.RawMessage(`{"error":{"code":"E","message":"m"}}`), At: goldenAt, Hash: "ignored"}
	withBehalf := full
	withBehalf.OnBehalf = "alice"
	unicode := engine.Event{TenantID: "tenant-é", RunID: "运行-1", Seq: 1, Type: engine.EventRunCreated,
		TaskID: "ταυ", Actor: "user:🙂", OnBehalf: "Zoë", Data: json.RawMessage(`{"input":"☃ \u0000"}`),
		At: time.Date(2024, 2, 29, 0, 0, 0, 1000, time.UTC)}
	large := engine.Event{TenantID: "t", RunID: "r", Seq: math.MaxInt64, Type: engine.EventRunRetried,
		Attempt: math.MaxInt32, Actor: engine.ActorEngine, At: time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)}
	negative := large
	negative.Seq, negative.Attempt = -1, -1
	nilData := engine.Event{TenantID: "t", RunID: "r", Seq: 2, Type: engine.EventRunPaused, Actor: "a", Data: nil}
	emptyData := nilData
	emptyData.Data = json.RawMessage{}
	splitA := engine.Event{TenantID: "ab", RunID: ""}
	splitB := engine.Event{TenantID: "a", RunID: "b"}

	checkGolden(t, []goldenCase{
		{"the zero event after no event", (&engine.Event{}).ComputeHash(""), "5b6fb58e61fa475939767d68a446f97f1bff02c0e5935a3ea8bb51e6515783d8"},
		{"every field set", full.ComputeHash(goldenPrev), "e7a69a761f8e77c37b27f11a06cba32c1cb82d09b20eb2090785f36d5df88357"},
		{"every field set and on behalf", withBehalf.ComputeHash(goldenPrev), "b1488a54bfb3a47b31bf12aae18ce0970389843c4c0801ef7d582c6ba532f1cc"},
		{"unicode fields", unicode.ComputeHash(""), "9ca8c3c0e4d10ae9b02ddc562b117f797f94999fa97a0e11eb8ed26cdaf39b47"},
		{"the largest numbers", large.ComputeHash(goldenPrev), "df978536ea7105e9abc3ca51eafb66d6a5be311dd5199615b72b5b1b021ab9a6"},
		{"negative numbers", negative.ComputeHash(goldenPrev), "19abae752a4db33611e76c41850d76f3bd310ba114ebf053bbdec0df0510b2ab"},
		{"nil data", nilData.ComputeHash("p"), "f4628ffa8c6abdcdfaa7bbfb61809bbfc7ece4b8053234024ac54a02fb2a1df9"},
		{"empty data", emptyData.ComputeHash("p"), "f4628ffa8c6abdcdfaa7bbfb61809bbfc7ece4b8053234024ac54a02fb2a1df9"},
		{"a byte moved from one field to the next", splitA.ComputeHash(""), "70c6f01c7c4a69626442263df8d08779b01597d569d1f0c327ebcaf3f2a20f00"},
		{"the byte in the next field", splitB.ComputeHash(""), "e5661109548645320311271254a43d3ba296065072ce9eb91ec135cfd2faea66"},
	})
	is := is.New(t)
	is.Equal((&engine.Event{}).ComputeHash(""), zeroFields(10))                 // prev and nine fields, no on_behalf
	is.Equal(nilData.ComputeHash("p"), emptyData.ComputeHash("p"))              // nil and empty data are the same fact
	is.True(splitA.ComputeHash("") != splitB.ComputeHash(""))                   // the length prefixes keep field bounds
	is.True(full.ComputeHash(goldenPrev) != withBehalf.ComputeHash(goldenPrev)) // on_behalf is covered when set
}

func TestScheduleEvent_ComputeHash_Golden(t *testing.T) {
	t.Parallel()
	full := engine.ScheduleEvent{TenantID: "acme", ScheduleID: "nightly", Seq: 12, Type: engine.ScheduleSlotFired,
		Actor: engine.ActorEngine, OnBehalf: "bob", Data: json.RawMessage(`{"slot":"2025-01-01T00:00:00Z","run_id":"r9"}`),
		At: goldenAt, Hash: "ignored"}
	unicode := engine.ScheduleEvent{TenantID: "tenant-é", ScheduleID: "每日", Seq: 1, Type: engine.ScheduleCreated,
		Actor: "user:🙂", Data: json.RawMessage(`{"spec":{"cron":"0 * * * *","tz":"Europe/Zürich"}}`),
		At: time.Date(2024, 2, 29, 12, 0, 0, 0, time.UTC)}
	large := engine.ScheduleEvent{TenantID: "t", ScheduleID: "s", Seq: math.MaxInt64, Type: engine.ScheduleSlotsMissed,
		Actor: "a", At: time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)}
	nilData := engine.ScheduleEvent{TenantID: "t", ScheduleID: "s", Seq: 2, Type: engine.ScheduleUnpaused, Actor: "a", Data: nil}
	emptyData := nilData
	emptyData.Data = json.RawMessage{}

	checkGolden(t, []goldenCase{
		{"the zero event after no event", (&engine.ScheduleEvent{}).ComputeHash(""), "834a709ba2534ebe3ee1397fd4f7bd288b2acc1d20a08d6c862dcd99b6f04400"},
		{"every field set", full.ComputeHash(goldenPrev), "8e0983f3cd5fce3ded9bb7793c6e2a53b8f5a13ddfd1fa88dd171597f1ce37f2"},
		{"unicode fields", unicode.ComputeHash(""), "2eea87927058b058b2b394c8eca0ec8ad3b92a72f73ee0116a01682ee2c55b75"},
		{"the largest seq", large.ComputeHash(goldenPrev), "09bd54c0734d7a1e15dea58fd93de6e82c0692139f03e0983a8188ecf5edf13c"},
		{"nil data", nilData.ComputeHash("p"), "695a19d4a9d6a7133b620cd7aaf0eea4af6a9c2a2039a63a9d90fa7f14a330b4"},
		{"empty data", emptyData.ComputeHash("p"), "695a19d4a9d6a7133b620cd7aaf0eea4af6a9c2a2039a63a9d90fa7f14a330b4"},
	})
	is := is.New(t)
	is.Equal((&engine.ScheduleEvent{}).ComputeHash(""), zeroFields(9)) // prev and eight fields
	is.Equal(nilData.ComputeHash("p"), emptyData.ComputeHash("p"))     // nil and empty data are the same fact
}

func TestAdminEvent_ComputeHash_Golden(t *testing.T) {
	t.Parallel()
	full := engine.AdminEvent{ID: 5, At: goldenAt, Actor: "key:0123456789abcdef:root", TenantID: "acme",
		Action: engine.AdminTenantCreated, Data: json.RawMessage(`{"name":"Acme"}`), Hash: "ignored"}
	unicode := engine.AdminEvent{ID: 1, At: time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), Actor: "user:🙂",
		TenantID: "tenant-é", Action: engine.AdminTenantUpdated, Data: json.RawMessage(`{"name":"Ünïcödé ☃"}`)}
	system := engine.AdminEvent{ID: math.MaxInt64, Actor: "root", Action: engine.AdminTenantSuspended}
	nilData := engine.AdminEvent{ID: 2, Actor: "a", TenantID: "t", Action: engine.AdminTenantSuspended, Data: nil}
	emptyData := nilData
	emptyData.Data = json.RawMessage{}

	checkGolden(t, []goldenCase{
		{"the zero entry after no entry", (&engine.AdminEvent{}).ComputeHash(""), "d4817aa5497628e7c77e6b606107042bbba3130888c5f47a375e6179be789fbb"},
		{"every field set", full.ComputeHash(goldenPrev), "b85a9473e6c598620965e3f378370ab7f254bdbd17562c8acda58a505712eeba"},
		{"unicode fields", unicode.ComputeHash(""), "7e78b8df8ff9ecc925dc7193b856fa363c53a189e6fb00e6524b14de43c7d166"},
		{"a system action with the largest id and no time", system.ComputeHash(goldenPrev), "e8aa4b572ba1f9d1f35f2ee37f6d9da0f080881a027dd409b1d4959d3259b53b"},
		{"nil data", nilData.ComputeHash("p"), "41af841d620ab113b6bd91eff47ee3ec340d9b3d85303ccf947d5b3d12929380"},
		{"empty data", emptyData.ComputeHash("p"), "41af841d620ab113b6bd91eff47ee3ec340d9b3d85303ccf947d5b3d12929380"},
	})
	is := is.New(t)
	is.Equal((&engine.AdminEvent{}).ComputeHash(""), zeroFields(7)) // prev and six fields
	is.Equal(nilData.ComputeHash("p"), emptyData.ComputeHash("p"))  // nil and empty data are the same fact
}

func TestCheckpoint_Digest_Golden(t *testing.T) {
	t.Parallel()
	cp := engine.Checkpoint{TenantID: "tenant-é", Seq: math.MaxInt64, At: goldenAt, FromEventID: 10,
		HeadEventID: 25, Events: 25, Runs: 2, HeadsDigest: "hd", PrevDigest: goldenPrev}
	heads := []engine.RunHead{{RunID: "运行-1", Seq: 4, Hash: "h1"}, {RunID: "r2", Seq: math.MaxInt64, Hash: ""}}

	checkGolden(t, []goldenCase{
		{"the zero checkpoint", (&engine.Checkpoint{}).ComputeDigest(), "9fd99a165e2a50cac6342229ca023253d60f8aadc9bfd9ebad22c3c2fa1eeba7"},
		{"every field set", cp.ComputeDigest(), "9b91eca2589edfed54737c16d4041e9e4714ed19091bbd857a3f2797ea99333c"},
		{"no heads", engine.HeadsDigest(nil), "ab1230363c42a08ab43b28644f7356ac5237af9b3cbf980a910003b97e7ad47e"},
		{"two heads", engine.HeadsDigest(heads), "3dbde3fcacbc71e198c6aaf3f39100d96db31a4a603a43bafef71d71aa745b06"},
	})
	is.New(t).Equal(engine.HeadsDigest(nil), engine.HeadsDigest([]engine.RunHead{})) // nil and empty heads are the same
}
