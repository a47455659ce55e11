//! Property tests of the frame decoder (issue 16, "strict frames"). Valid client frames
//! are generated from the types in README's frame table (every field, optional ones
//! present or not, keys in any order, unknown keys beside them) and must decode to exactly
//! the frame they describe; each mutation of one (a repeated key at any level, a field of
//! the wrong type, a required field dropped, a broken envelope) must be refused with the
//! documented code; and random or byte-mutated text must never panic the decoder.
//! JSON text is written by hand here because a repeated key cannot exist in a
//! `serde_json::Value`.

use proptest::prelude::*;
use proptest::test_runner::Config as PropConfig;
use roomgate::protocol::{
    AclChange, ClientFrame, DecodeError, ErrorCode, KickWho, MAX_SAFE_INTEGER, NotifyTarget, decode,
};
use serde_json::Value;

const DEPTH: usize = 32;

/// A JSON tree whose objects keep their keys as written, repeats included.
#[derive(Clone, Debug)]
enum J {
    Null,
    Bool(bool),
    Int(u64),
    Neg(i64),
    Frac(&'static str),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    fn text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Int(n) => out.push_str(&n.to_string()),
            J::Neg(n) => out.push_str(&n.to_string()),
            J::Frac(f) => out.push_str(f),
            J::Str(s) => out.push_str(&serde_json::to_string(s).expect("a string encodes")),
            J::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            J::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    J::Str(k.clone()).write(out);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }

    /// The value a (last-wins) JSON reader makes of it; used for `notification.data`,
    /// whose objects never repeat keys here.
    fn value(&self) -> Value {
        serde_json::from_str(&self.text()).expect("generated JSON parses")
    }
}

/// What a field must be, by README's table, and so what a wrong value looks like.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Any string (`roomId`, `content`, `body`).
    Str,
    /// A non-empty string.
    NonEmpty,
    /// A non-negative integer up to 2^53 - 1.
    Seq,
    Bool,
    StrList,
    IdList,
    /// `room_acl.grant`.
    Grant,
    /// `notification.data`: any JSON value.
    Any,
}

#[derive(Clone, Debug)]
struct Field {
    name: &'static str,
    value: J,
    kind: Kind,
    required: bool,
}

fn field(name: &'static str, value: J, kind: Kind, required: bool) -> Field {
    Field {
        name,
        value,
        kind,
        required,
    }
}

/// A valid frame: its type, its `data` fields (in the order written), extra keys of the
/// envelope, and the frame the decoder must make of it.
#[derive(Clone, Debug)]
struct Valid {
    kind: &'static str,
    fields: Vec<Field>,
    unknown: Vec<(String, J)>,
    expected: ClientFrame,
}

impl Valid {
    fn data(&self) -> J {
        let mut pairs: Vec<(String, J)> = self
            .fields
            .iter()
            .map(|f| (f.name.to_string(), f.value.clone()))
            .collect();
        pairs.extend(self.unknown.iter().cloned());
        J::Obj(pairs)
    }

    fn envelope(&self, data: J) -> J {
        J::Obj(vec![
            ("type".into(), J::Str(self.kind.into())),
            ("data".into(), data),
            ("timestamp".into(), J::Int(1_700_000_000_000)),
        ])
    }

    fn text(&self) -> String {
        self.envelope(self.data()).text()
    }
}

fn any_str() -> impl Strategy<Value = String> {
    "\\PC{0,10}"
}

fn non_empty() -> impl Strategy<Value = String> {
    "\\PC{1,10}"
}

fn opt<T: std::fmt::Debug + Clone>(
    s: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<T>> {
    prop::option::of(s)
}

fn seq() -> impl Strategy<Value = u64> {
    prop_oneof![0..=3u64, 0..=MAX_SAFE_INTEGER, Just(MAX_SAFE_INTEGER)]
}

/// Any JSON value without repeated keys and without floats (whose text need not read
/// back to the same bits).
fn any_json() -> impl Strategy<Value = J> {
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        any::<u64>().prop_map(J::Int),
        any::<i64>().prop_map(J::Neg),
        any_str().prop_map(J::Str),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(J::Arr),
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                .prop_map(|m| J::Obj(m.into_iter().collect())),
        ]
    })
}

/// Pushes an optional field when present.
fn push_opt(fields: &mut Vec<Field>, name: &'static str, value: Option<J>, kind: Kind) {
    if let Some(v) = value {
        fields.push(field(name, v, kind, false));
    }
}

fn strs(v: &[String]) -> J {
    J::Arr(v.iter().cloned().map(J::Str).collect())
}

/// One valid frame of each type in README's table (client → server rows).
fn valid_frame() -> impl Strategy<Value = (&'static str, Vec<Field>, ClientFrame)> {
    prop_oneof![
        // auth {token} or {wsToken}; refresh {token}.
        (non_empty(), any::<bool>()).prop_map(|(t, ws)| {
            let name = if ws { "wsToken" } else { "token" };
            (
                "auth",
                vec![field(name, J::Str(t.clone()), Kind::NonEmpty, true)],
                ClientFrame::Auth { token: t },
            )
        }),
        non_empty().prop_map(|t| (
            "refresh",
            vec![field("token", J::Str(t.clone()), Kind::NonEmpty, true)],
            ClientFrame::Refresh { token: t },
        )),
        (any_str(), opt(seq()), opt(seq())).prop_map(|(room, since, epoch)| {
            let mut f = vec![field("roomId", J::Str(room.clone()), Kind::Str, true)];
            push_opt(&mut f, "since", since.map(J::Int), Kind::Seq);
            push_opt(&mut f, "epoch", epoch.map(J::Int), Kind::Seq);
            let expected = ClientFrame::Join {
                room_id: room,
                since,
                epoch,
            };
            ("join", f, expected)
        }),
        any_str().prop_map(|room| (
            "leave",
            vec![field("roomId", J::Str(room.clone()), Kind::Str, true)],
            ClientFrame::Leave { room_id: room },
        )),
        any_str().prop_map(|room| (
            "presence",
            vec![field("roomId", J::Str(room.clone()), Kind::Str, true)],
            ClientFrame::Presence { room_id: room },
        )),
        (any_str(), any_str(), opt(any_str())).prop_map(|(room, content, id)| {
            let mut f = vec![
                field("roomId", J::Str(room.clone()), Kind::Str, true),
                field("content", J::Str(content.clone()), Kind::Str, true),
            ];
            push_opt(&mut f, "clientMsgId", id.clone().map(J::Str), Kind::Str);
            let expected = ClientFrame::Message {
                room_id: room,
                content,
                client_msg_id: id,
            };
            ("message", f, expected)
        }),
        (any_str(), opt(seq()), opt(seq()), opt(seq())).prop_map(|(room, since, before, limit)| {
            let mut f = vec![field("roomId", J::Str(room.clone()), Kind::Str, true)];
            push_opt(&mut f, "since", since.map(J::Int), Kind::Seq);
            push_opt(&mut f, "before", before.map(J::Int), Kind::Seq);
            push_opt(&mut f, "limit", limit.map(J::Int), Kind::Seq);
            let expected = ClientFrame::History {
                room_id: room,
                since,
                before,
                limit,
            };
            ("history", f, expected)
        }),
        Just(("heartbeat", Vec::new(), ClientFrame::Heartbeat)),
        (any_str(), non_empty(), any::<bool>(), opt(any::<bool>())).prop_map(
            |(room, who, by_user, ban)| {
                let mut f = vec![field("roomId", J::Str(room.clone()), Kind::Str, true)];
                let (target, ban) = if by_user {
                    f.push(field("userId", J::Str(who.clone()), Kind::NonEmpty, true));
                    push_opt(&mut f, "ban", ban.map(J::Bool), Kind::Bool);
                    (KickWho::User(who), ban.unwrap_or(false))
                } else {
                    // `ban` only with `userId`: a socket cannot be banned.
                    f.push(field(
                        "connectionId",
                        J::Str(who.clone()),
                        Kind::NonEmpty,
                        true,
                    ));
                    (KickWho::Connection(who), false)
                };
                let expected = ClientFrame::Kick {
                    room_id: room,
                    target,
                    ban,
                };
                ("kick", f, expected)
            }
        ),
        (
            any_str(),
            [
                opt(prop::collection::vec(any_str(), 0..3)),
                opt(prop::collection::vec(any_str(), 0..3)),
                opt(prop::collection::vec(any_str(), 0..3)),
            ],
            opt(any::<bool>()),
            opt((non_empty(), any::<bool>(), any::<bool>(), any::<bool>())),
            [opt(non_empty()), opt(non_empty()), opt(non_empty())],
        )
            .prop_map(
                |(room, [read, write, admin], show, grant, [revoke, ban, unban])| {
                    let mut f = vec![field("roomId", J::Str(room.clone()), Kind::Str, true)];
                    push_opt(&mut f, "read", read.as_deref().map(strs), Kind::StrList);
                    push_opt(&mut f, "write", write.as_deref().map(strs), Kind::StrList);
                    push_opt(&mut f, "admin", admin.as_deref().map(strs), Kind::StrList);
                    push_opt(&mut f, "showEmails", show.map(J::Bool), Kind::Bool);
                    push_opt(
                        &mut f,
                        "grant",
                        grant.clone().map(|(u, r, w, a)| {
                            J::Obj(vec![
                                ("userId".into(), J::Str(u)),
                                ("read".into(), J::Bool(r)),
                                ("write".into(), J::Bool(w)),
                                ("admin".into(), J::Bool(a)),
                            ])
                        }),
                        Kind::Grant,
                    );
                    push_opt(
                        &mut f,
                        "revokeGrant",
                        revoke.clone().map(J::Str),
                        Kind::NonEmpty,
                    );
                    push_opt(&mut f, "ban", ban.clone().map(J::Str), Kind::NonEmpty);
                    push_opt(&mut f, "unban", unban.clone().map(J::Str), Kind::NonEmpty);
                    let expected = ClientFrame::RoomAcl {
                        room_id: room,
                        change: AclChange {
                            read,
                            write,
                            admin,
                            show_emails: show,
                            grant,
                            revoke_grant: revoke,
                            ban,
                            unban,
                        },
                    };
                    ("room_acl", f, expected)
                }
            ),
        (
            prop_oneof![
                any_str().prop_map(|u| ("userId", NotifyTarget::Users(vec![u]))),
                prop::collection::vec(any_str(), 0..3)
                    .prop_map(|us| ("userIds", NotifyTarget::Users(us))),
                any_str().prop_map(|r| ("roomId", NotifyTarget::Room(r))),
            ],
            opt(non_empty()),
            opt(non_empty()),
            any_str(),
            opt(any_json()),
        )
            .prop_map(|((name, target), kind, title, body, data)| {
                let target_json = match &target {
                    NotifyTarget::Users(us) if name == "userId" => J::Str(us[0].clone()),
                    NotifyTarget::Users(us) => strs(us),
                    NotifyTarget::Room(r) => J::Str(r.clone()),
                };
                let mut f = vec![
                    field(name, target_json, Kind::NonEmpty, true),
                    field("body", J::Str(body.clone()), Kind::Str, true),
                ];
                if name == "userIds" {
                    f[0].kind = Kind::StrList;
                } else {
                    f[0].kind = Kind::Str;
                }
                push_opt(&mut f, "kind", kind.clone().map(J::Str), Kind::NonEmpty);
                push_opt(&mut f, "title", title.clone().map(J::Str), Kind::NonEmpty);
                push_opt(&mut f, "data", data.clone(), Kind::Any);
                let expected = ClientFrame::Notification {
                    target,
                    kind,
                    title,
                    body,
                    data: data.map(|d| d.value()).filter(|v| !v.is_null()),
                };
                ("notification", f, expected)
            }),
        prop::collection::vec(0..=u64::MAX, 0..4).prop_map(|ids| (
            "notification_ack",
            vec![field(
                "ids",
                J::Arr(ids.iter().copied().map(J::Int).collect()),
                Kind::IdList,
                true
            )],
            ClientFrame::NotificationAck { ids },
        )),
    ]
}

/// Names no frame type uses for a `data` field.
fn unknown_keys() -> impl Strategy<Value = Vec<(String, J)>> {
    prop::collection::btree_map("x[A-Z][a-z]{0,4}", any_json(), 0..3)
        .prop_map(|m| m.into_iter().collect())
}

fn valid() -> impl Strategy<Value = Valid> {
    (valid_frame(), unknown_keys())
        .prop_flat_map(|((kind, fields, expected), unknown)| {
            (Just(fields).prop_shuffle(), Just((kind, unknown, expected)))
        })
        .prop_map(|(fields, (kind, unknown, expected))| Valid {
            kind,
            fields,
            unknown,
            expected,
        })
}

/// Values that are not of `kind` and not `null` (an optional field may be `null`).
fn wrong_values(kind: Kind) -> Vec<J> {
    let obj = J::Obj(vec![("k".into(), J::Int(1))]);
    match kind {
        Kind::Str | Kind::NonEmpty => vec![J::Int(1), J::Bool(true), J::Arr(vec![]), obj],
        Kind::Seq => vec![
            J::Str("3".into()),
            J::Neg(-1),
            J::Frac("1.5"),
            J::Int(MAX_SAFE_INTEGER + 1),
            J::Bool(false),
            obj,
        ],
        Kind::Bool => vec![J::Str("true".into()), J::Int(1), J::Arr(vec![])],
        Kind::StrList => vec![J::Str("a".into()), J::Arr(vec![J::Int(1)]), obj],
        Kind::IdList => vec![
            J::Int(1),
            J::Arr(vec![J::Str("1".into())]),
            J::Arr(vec![J::Neg(-1)]),
        ],
        Kind::Grant => vec![J::Str("u".into()), J::Arr(vec![]), J::Int(1)],
        Kind::Any => vec![],
    }
}

/// Every path to an object inside the frame, as indexes into nested `Obj`/`Arr` nodes.
fn object_paths(j: &J, at: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
    match j {
        J::Obj(fields) => {
            if !fields.is_empty() {
                out.push(at.clone());
            }
            for (i, (_, v)) in fields.iter().enumerate() {
                at.push(i);
                object_paths(v, at, out);
                at.pop();
            }
        }
        J::Arr(items) => {
            for (i, v) in items.iter().enumerate() {
                at.push(i);
                object_paths(v, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn node_mut<'a>(j: &'a mut J, path: &[usize]) -> &'a mut J {
    match (j, path.split_first()) {
        (j, None) => j,
        (J::Obj(fields), Some((i, rest))) => node_mut(&mut fields[*i].1, rest),
        (J::Arr(items), Some((i, rest))) => node_mut(&mut items[*i], rest),
        _ => unreachable!("paths come from object_paths"),
    }
}

fn refused(text: &str) -> DecodeError {
    match decode(text, DEPTH) {
        Ok(frame) => panic!("accepted {text} as {frame:?}"),
        Err(e) => e,
    }
}

fn config() -> PropConfig {
    PropConfig {
        cases: 512,
        ..PropConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Every frame README's table allows decodes to exactly the frame it describes.
    #[test]
    fn valid_frames_decode_to_what_they_say(v in valid()) {
        let text = v.text();
        prop_assert_eq!(decode(&text, DEPTH), Ok(v.expected.clone()), "{}", text);
    }

    /// A key repeated in any object of a valid frame (the envelope, `data`, `grant`,
    /// inside `notification.data`), with the same value or another, is refused with
    /// `invalid_structure`, wherever the copy lands in that object.
    #[test]
    fn a_repeated_key_anywhere_is_invalid_structure(
        v in valid(),
        pick in any::<prop::sample::Index>(),
        key in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        other in any_json(),
        same in any::<bool>(),
    ) {
        let mut frame = v.envelope(v.data());
        let mut paths = Vec::new();
        object_paths(&frame, &mut Vec::new(), &mut paths);
        let path = pick.get(&paths).clone();
        let J::Obj(fields) = node_mut(&mut frame, &path) else { unreachable!() };
        let (name, value) = key.get(fields).clone();
        let copy = if same { value } else { other };
        let pos = at.index(fields.len() + 1);
        fields.insert(pos, (name, copy));
        let text = frame.text();
        prop_assert_eq!(refused(&text).code, ErrorCode::InvalidStructure, "{}", text);
    }

    /// A `data` field of the wrong type is refused (never taken for something else).
    #[test]
    fn a_mistyped_field_is_refused(v in valid(), pick in any::<prop::sample::Index>(), wrong in any::<prop::sample::Index>()) {
        let candidates: Vec<usize> = (0..v.fields.len())
            .filter(|&i| !wrong_values(v.fields[i].kind).is_empty())
            .collect();
        prop_assume!(!candidates.is_empty());
        let i = *pick.get(&candidates);
        let mut m = v.clone();
        m.fields[i].value = wrong.get(&wrong_values(m.fields[i].kind)).clone();
        let text = m.text();
        let e = refused(&text);
        prop_assert!(
            matches!(e.code, ErrorCode::InvalidField | ErrorCode::TokenRequired | ErrorCode::InvalidRecipients),
            "{} gave {:?}", text, e
        );
    }

    /// A required `data` field left out is refused.
    #[test]
    fn a_missing_required_field_is_refused(v in valid(), pick in any::<prop::sample::Index>()) {
        let required: Vec<usize> = (0..v.fields.len()).filter(|&i| v.fields[i].required).collect();
        prop_assume!(!required.is_empty());
        let mut m = v.clone();
        m.fields.remove(*pick.get(&required));
        let text = m.text();
        let e = refused(&text);
        prop_assert!(
            matches!(e.code, ErrorCode::InvalidField | ErrorCode::TokenRequired | ErrorCode::InvalidRecipients),
            "{} gave {:?}", text, e
        );
    }

    /// The envelope must be `{type: string, data: object, timestamp: number}`.
    #[test]
    fn a_broken_envelope_is_invalid_structure(v in valid(), which in 0..3usize, how in 0..3usize) {
        let J::Obj(mut env) = v.envelope(v.data()) else { unreachable!() };
        let replacement = match (which, how) {
            (_, 0) => None,
            (0, _) => Some(J::Int(1)),
            (1, 1) => Some(J::Arr(vec![])),
            (1, _) => Some(J::Str("{}".into())),
            (2, 1) => Some(J::Str("1".into())),
            _ => Some(J::Null),
        };
        match replacement {
            None => { env.remove(which); }
            Some(r) => env[which].1 = r,
        }
        let text = J::Obj(env).text();
        prop_assert_eq!(refused(&text).code, ErrorCode::InvalidStructure, "{}", text);
    }

    /// A `type` not in the table is `unknown_type`.
    #[test]
    fn an_unknown_type_is_refused(v in valid(), kind in "[a-z_]{1,12}") {
        let known = ["auth", "refresh", "join", "leave", "presence", "message", "history",
            "heartbeat", "kick", "room_acl", "notification", "notification_ack"];
        prop_assume!(!known.contains(&kind.as_str()));
        let J::Obj(mut env) = v.envelope(v.data()) else { unreachable!() };
        env[0].1 = J::Str(kind);
        let text = J::Obj(env).text();
        prop_assert_eq!(refused(&text).code, ErrorCode::UnknownType, "{}", text);
    }

    /// Characters of a valid frame deleted, replaced or inserted: the decoder answers
    /// (never panics), and whatever it accepts is JSON without a repeated key.
    #[test]
    fn mutated_frames_never_panic(
        v in valid(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0..3u8, any::<char>()), 1..6),
    ) {
        let mut chars: Vec<char> = v.text().chars().collect();
        for (at, op, c) in edits {
            let i = at.index(chars.len() + 1);
            match op {
                0 if i < chars.len() => { chars.remove(i); }
                1 if i < chars.len() => chars[i] = c,
                _ => chars.insert(i, c),
            }
        }
        let text: String = chars.into_iter().collect();
        if decode(&text, DEPTH).is_ok() {
            prop_assert!(serde_json::from_str::<Value>(&text).is_ok(), "accepted non-JSON {}", text);
        }
    }

    /// Arbitrary text, including JSON-ish noise, never panics the decoder.
    #[test]
    fn random_text_never_panics(text in "\\PC{0,200}", noise in "[\\[\\]{}\":,a-z0-9\\\\ ]{0,200}") {
        let _ = decode(&text, DEPTH);
        let _ = decode(&noise, DEPTH);
        let _ = decode(&noise, 2);
    }
}
