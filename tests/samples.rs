//! Token totals for every transcript sample in `../shared/formats/samples/`.
//!
//! Each test copies one sample (or a set of them) into a throwaway Claude home,
//! runs a full scan, and checks input, output, cache-creation and cache-read tokens
//! and the number of distinct responses counted; for the synthetic and malformed
//! samples it also checks the per-outcome line counts.
//!
//! Every expected number was derived by hand from the sample, following the
//! counting rules (not copied from ccotel's output). The working is in the comment
//! beside each expectation. Notation: one row per response, i.e. per
//! (`message.id`, `requestId`) group: `<id chars 5..12> L<line numbers>: in/out/cc/cr`
//! taken from the group's largest line. `sc` marks a sidechain response, and
//! `(out a→b)` shows output_tokens growing across the group's lines. Input, cache
//! creation and cache read never change within a group in these samples, and the
//! largest line is always the group's last line.

mod common;

use ccotel::transcript::LineStats;
use common::{token_totals, ClaudeHome};

/// (input, output, cache_creation, cache_read, responses).
type Totals = (u64, u64, u64, u64, u64);

/// Copies each `(sample, destination under projects/)` pair into a fresh home,
/// scans it, and returns the token totals and the line counts.
fn scan(files: &[(&str, &str)]) -> (Totals, LineStats) {
    let home = ClaudeHome::new();
    for (sample, destination) in files {
        home.copy_sample(sample, destination);
    }
    let ingest = home.full_scan();
    assert!(
        ingest.summary.errors.is_empty(),
        "read errors: {:?}",
        ingest.summary.errors
    );
    (token_totals(&ingest), ingest.summary.lines)
}

/// Line counts for a sample in which every line read decodes cleanly.
fn clean_lines(lines: u64) -> LineStats {
    LineStats {
        lines,
        ..LineStats::default()
    }
}

#[test]
fn claude_code_viewer_1af7fc5e() {
    let (totals, lines) = scan(&[(
        "claude-code-viewer/1af7fc5e-8455-4414-9ccd-011d40f70b2a.jsonl",
        "-proj/1af7fc5e-8455-4414-9ccd-011d40f70b2a.jsonl",
    )]);
    // 29 lines, 15 assistant lines, 7 responses (4 span >1 line):
    //   01TqDZoU L3,4: 3/322/10816/4734 (out 8→322)
    //   018mu4at L6,7,8,9,10: 6/285/304/15550 (out 30→30→30→30→285)
    //   01TRqeU6 L16,17,18: 7/146/435/15854 (out 30→146→146)
    //   01XP9vCz L22: 61/41/243/16289
    //   01RaR4gi L24,25: 5/1/425/16532
    //   01PbR8tQ L27: 6/86/346/16957
    //   01EoAxzg L29: 5/72/129/17303
    // input: 3+6+7+61+5+6+5 = 93
    // output: 322+285+146+41+1+86+72 = 953 (keeping the first line instead would give 268)
    // cache_creation: 10816+304+435+243+425+346+129 = 12698
    // cache_read: 4734+15550+15854+16289+16532+16957+17303 = 103219
    assert_eq!(totals, (93, 953, 12698, 103219, 7));
    assert_eq!(lines, clean_lines(29));
}

#[test]
fn claude_code_viewer_5c0375b4() {
    let (totals, lines) = scan(&[(
        "claude-code-viewer/5c0375b4-57a5-4f26-b12d-d022ee4e51b7.jsonl",
        "-proj/5c0375b4-57a5-4f26-b12d-d022ee4e51b7.jsonl",
    )]);
    // 53 lines, 28 assistant lines, 20 responses (6 span >1 line); 10 of them are
    // inline sidechain (Task subagent) responses, which count. The 2 user lines with
    // a Task `toolUseResult.usage` are not counted.
    //   01QdKEzw L3,4: 4/263/18764/0 (out 3→263)
    //   014fJ8dn L6,7,8: 7/302/255/18764 (out 25→25→302)
    //   01XU4B1n L12,13,14: 8/625/422/19019 (out 31→31→625)
    //   012hC6NG L17,18 sc: 4/107/12802/0
    //   01BWHsYx L20 sc: 7/70/133/12802
    //   01CHVXQb L22 sc: 7/308/501/12935
    //   01RZsKn6 L25: 8/207/901/19441
    //   01DgeiJ5 L27,28 sc: 4/179/1334/11454
    //   01MCZ9jp L30 sc: 7/86/592/12788
    //   01AJPhFe L32 sc: 7/102/335/13380
    //   0154Ya5n L34 sc: 8/92/4890/13715
    //   01LNNPxt L36 sc: 7/70/304/18605
    //   01AgY3sB L38 sc: 7/92/501/18909
    //   01T439F5 L40 sc: 7/520/281/19410
    //   01W3cQCM L42: 6/24/737/20342
    //   011kU8if L44,45: 6/1/228/21079
    //   01UhHkLM L47: 7/67/265/21307
    //   01C2x95z L49: 6/26/1317/21572
    //   01RgviKN L51: 6/184/2959/22889
    //   018Fip6V L53: 6/304/226/25848
    // input: 4+7+8+4+7+7+8+4+7+7+8+7+7+7+6+6+7+6+6+6 = 129
    // output: 263+302+625+107+70+308+207+179+86+102+92+70+92+520+24+1+67+26+184+304 = 3629
    // cache_creation: 18764+255+422+12802+133+501+901+1334+592+335+4890+304+501+281
    //   +737+228+265+1317+2959+226 = 47747
    // cache_read: 0+18764+19019+0+12802+12935+19441+11454+12788+13380+13715+18605
    //   +18909+19410+20342+21079+21307+21572+22889+25848 = 324259
    // (trunk 10 responses 64/2003/26074/190261 + sidechain 10 65/1626/21673/133998)
    assert_eq!(totals, (129, 3629, 47747, 324259, 20));
    assert_eq!(lines, clean_lines(53));
}

#[test]
fn claude_code_viewer_fe5e1c67() {
    let (totals, lines) = scan(&[(
        "claude-code-viewer/fe5e1c67-53e7-4862-81ae-d0e013e3270b.jsonl",
        "-proj/fe5e1c67-53e7-4862-81ae-d0e013e3270b.jsonl",
    )]);
    // 438 lines (a leading `summary`, 175 user, 262 assistant). The 262 assistant
    // lines form 170 responses: 82 of one line, 85 of two, 2 of three, 1 of four
    // (88 span >1 line). No message.id has two requestIds; no line is excluded. The
    // 5 Task `toolUseResult.usage` objects are not counted.
    // Per part (responses, lines, then in/out/cc/cr sums of per-response maxima):
    //   trunk                          9 resp,  18 lines:   373/ 2636/  6672/ 161313
    //   subagent rooted at L16 (sc)    9 resp,  12 lines:    49/ 2599/ 14649/ 103243
    //   subagent rooted at L38 (sc)   34 resp,  52 lines:    57/ 9863/ 41160/ 739334
    //   subagent rooted at L125 (sc)  40 resp,  58 lines:   111/11134/ 29050/ 790241
    //   subagent rooted at L229 (sc)  25 resp,  40 lines:   104/10415/ 15100/ 447579
    //   subagent rooted at L295 (sc)  53 resp,  82 lines:   124/15286/ 31345/1406144
    //   total                        170 resp, 262 lines:   818/51933/137976/3647854
    // Output grows inside 4 responses: 0175yHhP L4,5,6 (out 3→172→172),
    // 01PrGGvE L12,13,14,15 (out 1→1→1→598), 013pWjVz L226,227,228 (out 2→2→414),
    // 01SrNFz7 L435,436 (out 1→976); keeping first lines would give output 49780.
    assert_eq!(totals, (818, 51933, 137976, 3647854, 170));
    assert_eq!(lines, clean_lines(438));
}

// The fasthooks trunk: 63 lines, 28 assistant lines, 12 responses, all spanning 2–4
// lines.
//   012yp674 L3,4: 9/8/5061/12834
//   013yJNBs L6,7: 12/1/558/17895
//   01AodYGs L11,12: 9/231/23/18554 (out 8→231)
//   013ptQZv L15,16: 12/1/258/18577
//   01FjFQZJ L20,21: 9/8/13/18731
//   01S2jwEU L23,24: 12/2/198/18744
//   01KpWDKw L28,29: 9/3/14/18962
//   01Vx5SVM L31,32: 13/1/281/18976
//   019c8sE1 L36,37,38: 9/993/13/19258 (out 3→3→993)
//   01WMh3eZ L43,44,45,46: 13/1/1151/19271
//   01V7rfv6 L50,51,52: 13/228/619/20422 (out 1→1→228)
//   012Xq94D L54,55: 12/3/278/21041
// input: 9+12+9+12+9+12+9+13+9+13+13+12 = 132
// output: 8+1+231+1+8+2+3+1+993+1+228+3 = 1480
// cache_creation: 5061+558+23+258+13+198+14+281+13+1151+619+278 = 8467
// cache_read: 12834+17895+18554+18577+18731+18744+18962+18976+19258+19271+20422+21041 = 223265
const FASTHOOKS_MAIN: Totals = (132, 1480, 8467, 223265, 12);

// The fasthooks "Warmup" agent file: 2 lines, one assistant line (sidechain,
// msg_01UQW3Q8…, req_011CWj5f…): 728/152/0/0, 1 response.
const FASTHOOKS_AGENT: Totals = (728, 152, 0, 0, 1);

#[test]
fn fasthooks_main_transcript() {
    let (totals, lines) = scan(&[(
        "fasthooks/sample_main_transcript.jsonl",
        "-proj/c45af7b1-cb7c-4e51-93db-8cbb250a877a.jsonl",
    )]);
    assert_eq!(totals, FASTHOOKS_MAIN);
    assert_eq!(lines, clean_lines(63));
}

#[test]
fn fasthooks_agent_sidechain() {
    let (totals, lines) = scan(&[(
        "fasthooks/sample_agent_sidechain.jsonl",
        "-proj/agent-af1ff21.jsonl",
    )]);
    assert_eq!(totals, FASTHOOKS_AGENT);
    assert_eq!(lines, clean_lines(2));
}

#[test]
fn fasthooks_trunk_and_agent_together() {
    // 2.0 layout: the agent file sits beside its trunk in the project directory.
    let (totals, lines) = scan(&[
        (
            "fasthooks/sample_main_transcript.jsonl",
            "-proj/c45af7b1-cb7c-4e51-93db-8cbb250a877a.jsonl",
        ),
        (
            "fasthooks/sample_agent_sidechain.jsonl",
            "-proj/agent-af1ff21.jsonl",
        ),
    ]);
    // The agent's message.id is none of the trunk's 12, so nothing is merged:
    // 132+728 = 860, 1480+152 = 1632, 8467+0 = 8467, 223265+0 = 223265, 12+1 = 13.
    assert_eq!(totals, (860, 1632, 8467, 223265, 13));
    assert_eq!(lines, clean_lines(63 + 2));
}

#[test]
fn spotter_short() {
    let (totals, lines) = scan(&[(
        "spotter/short.jsonl",
        "-home-USER-proj/55604662-cf2a-4331-851a-ec234028f8ca.jsonl",
    )]);
    // 15 lines; the 5 assistant lines L5,6,7,8,10 are one response (01MKH1cc),
    // every line 3/13/13835/11515. The 3 `progress` lines carry no usage.
    assert_eq!(totals, (3, 13, 13835, 11515, 1));
    assert_eq!(lines, clean_lines(15));
}

#[test]
fn spotter_tool_heavy() {
    let (totals, lines) = scan(&[(
        "spotter/tool_heavy.jsonl",
        "-home-USER-proj/d6e0bada-1959-4eec-a9d2-0bfade768d8f.jsonl",
    )]);
    // 39 lines, 9 assistant lines, 4 responses (3 span >1 line):
    //   0167kgZU L5: 3/27/7883/17915
    //   01NUXWeN L12,13: 1/1/208/25798
    //   01Lbyjvs L27,28,29,30: 3/11/8490/18014
    //   019BN3FR L34,37: 47/173/1115/26504 (out 25→173)
    // input: 3+1+3+47 = 54
    // output: 27+1+11+173 = 212
    // cache_creation: 7883+208+8490+1115 = 17696
    // cache_read: 17915+25798+18014+26504 = 88231
    assert_eq!(totals, (54, 212, 17696, 88231, 4));
    assert_eq!(lines, clean_lines(39));
}

#[test]
fn spotter_subagent() {
    let (totals, lines) = scan(&[(
        "spotter/subagent.jsonl",
        "-home-USER-proj/491e126e-1e71-469c-ade2-fcc8af567c74.jsonl",
    )]);
    // 96 lines, 28 assistant lines, 12 responses (7 span >1 line):
    //   01LvWnnd L6,7,8,9,10,11,12: 2/10/10245/17915
    //   01FqB3Yi L17,18,19,22: 1562/8/1427/28160
    //   016TsTPA L24: 1/25/3954/29587
    //   011qrHZ7 L27,28,29: 1/8/1362/33541
    //   0179FgGt L31,32,33: 1/472/762/34903 (out 8→8→472)
    //   01QVA9Zt L35,36: 1/589/563/35665 (out 1→589)
    //   01UnrGDj L57,58: 1/1/3777/36228
    //   017g4V9x L67: 1/22/2206/40005
    //   01ToTCPL L72: 3/406/13/42314
    //   01Dy5b5m L77,81: 1/25/565/42327
    //   01APJK9q L87: 1/19/857/42892
    //   01AwQF1c L92: 1/1/111/43749
    // input: 2+1562+1+1+1+1+1+1+3+1+1+1 = 1576
    // output: 10+8+25+8+472+589+1+22+406+25+19+1 = 1586
    // cache_creation: 10245+1427+3954+1362+762+563+3777+2206+13+565+857+111 = 25842
    // cache_read: 17915+28160+29587+33541+34903+35665+36228+40005+42314+42327+42892+43749 = 427286
    // Not counted: 9 `progress`/agent_progress lines (L38..54) embedding copies of 5
    // subagent responses (they would add 24/7/14285/95343), and 1 Task
    // `toolUseResult.usage`.
    assert_eq!(totals, (1576, 1586, 25842, 427286, 12));
    assert_eq!(lines, clean_lines(96));
}

#[test]
fn claude_code_log_edge_cases() {
    let (totals, lines) = scan(&[("claude-code-log/edge_cases.jsonl", "-tmp/edge_cases.jsonl")]);
    // The file has 18 newline-terminated lines; line 19 (a `summary`) has no
    // trailing newline, so it is pending and not read.
    // 4 assistant responses, one line each (usage has no cache fields → 0):
    //   L2  edge_002/req_edge_001: 35/145/0/0
    //   L4  edge_004/req_edge_002: 200/25/0/0
    //   L9  edge_009/req_edge_003: 85/180/0/0
    //   L17 msg_004/req_004:       168/85/0/0 (no timestamp; still counted)
    // input: 35+200+85+168 = 488; output: 145+25+180+85 = 435
    assert_eq!(totals, (488, 435, 0, 0, 4));
    // Line outcomes: L13 `"massive error"`, L15 `42`, L16 `[1]` are JSON but not
    // objects (3). L11 (`message:"error"`) and L14 (`{"silly":"this"}`) are objects
    // that count nothing. No blank, malformed or repaired lines.
    assert_eq!(
        lines,
        LineStats {
            lines: 18,
            not_object: 3,
            ..LineStats::default()
        }
    );
}

#[test]
fn agent_sessions_schema_drift() {
    let (totals, lines) = scan(&[(
        "synthetic/agent-sessions/schema_drift.jsonl",
        "-tmp-project/ses_stage0_drift.jsonl",
    )]);
    // 9 lines, all valid objects. The only `assistant` line (L4) has a message with
    // no id and no usage, so nothing is counted; top-level `tool_use`/`tool_result`,
    // `permission-mode`, `attachment` and `system` lines never count.
    assert_eq!(totals, (0, 0, 0, 0, 0));
    assert_eq!(lines, clean_lines(9));
}

#[test]
fn agent_sessions_subagent_file() {
    // 2.1 layout: <session>/subagents/agent-<id>.jsonl.
    let (totals, lines) = scan(&[(
        "synthetic/agent-sessions/subagent-0a1b2c3d/subagents/agent-a0ad4f44468bdf20d.jsonl",
        "-tmp/0a1b2c3d-4e5f-4061-8071-2a3b4c5d6e7f/subagents/agent-a0ad4f44468bdf20d.jsonl",
    )]);
    // 4 lines, all valid objects. The one `assistant` line (L2, isApiErrorMessage
    // false) has no message.id and no usage, so nothing is counted.
    assert_eq!(totals, (0, 0, 0, 0, 0));
    assert_eq!(lines, clean_lines(4));
}

#[test]
fn constructed_malformed_lines() {
    let (totals, lines) = scan(&[(
        "synthetic/constructed/malformed_lines.jsonl",
        "-tmp-p/00000000-0000-4000-8000-0000000000aa.jsonl",
    )]);
    // 7 newline-terminated lines; L8 (a user record cut off after `"content":"trunc`)
    // has no newline, so it is pending and not read.
    //   L1 user                                   ok
    //   L2 `{"type":"pr-link",…,"prNu{"parentUuid":"u1",…}` torn: the complete
    //      record starts at `{"parentUuid"` (byte 74) and parses → repaired. It is
    //      the only assistant response, msg_x1/req_x1: 3/5/100/2000. (The last
    //      `{"type"` on the line, byte 338, is the nested content block
    //      `{"type":"text","text":"hi"}`, whose tail does not parse on its own.)
    //   L3 empty, L4 three spaces                 blank (2)
    //   L5 user with a lone `\ud83c` escape inside message.content: counting never
    //      decodes that string (serde_json accepts the escape in skipped fields,
    //      FORMAT.md §2), so the line decodes as is → ok, not repaired
    //   L6 `42`                                   not an object
    //   L7 `some-future-type`                     ok, counts nothing
    assert_eq!(totals, (3, 5, 100, 2000, 1));
    assert_eq!(
        lines,
        LineStats {
            lines: 7,
            blank: 2,
            not_object: 1,
            malformed: 0,
            repaired: 1,
            oversized: 0,
        }
    );
}
