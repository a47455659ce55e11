//! README's command reference is the binary's own help: every command, its arguments and
//! flags, with the same words `roomgate ... --help` prints, generated here from the clap
//! definition and compared with the block between README's `roomgate-help` markers. A
//! new command or a reworded flag fails this test until README says the same; the
//! expected block is written to `target/cli-reference.md` to copy from.

use clap::CommandFactory;
use roomgate::cli::Cli;

fn flag_text(a: &clap::Arg) -> String {
    let value = a
        .get_value_names()
        .map(|v| v.iter().map(|n| format!(" <{n}>")).collect::<String>())
        .unwrap_or_default();
    let takes_value = a.get_action().takes_values();
    let many = takes_value && a.get_num_args().is_some_and(|n| n.max_values() > 1);
    match (a.get_long(), a.is_positional()) {
        (_, true) => format!("<{}>", a.get_id().as_str().to_uppercase()),
        (Some(long), false) if takes_value => {
            let value = if value.is_empty() {
                format!(" <{}>", a.get_id().as_str().to_uppercase())
            } else {
                value
            };
            format!("--{long}{value}{}", if many { "..." } else { "" })
        }
        (Some(long), false) => format!("--{long}"),
        (None, false) => a.get_id().to_string(),
    }
}

fn help_of(a: &clap::Arg) -> String {
    let mut h = a.get_help().map(|h| h.to_string()).unwrap_or_default();
    let defaults: Vec<String> = a
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    if !defaults.is_empty() {
        h.push_str(&format!(" [default: {}]", defaults.join(",")));
    }
    h
}

fn render(cmd: &clap::Command, path: &str, out: &mut String) {
    let args: Vec<&clap::Arg> = cmd
        .get_arguments()
        .filter(|a| !a.is_global_set() && !a.is_hide_set())
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version" | "config" | "data"))
        .collect();
    let about = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
    let has_subcommands = cmd.get_subcommands().next().is_some();
    if !has_subcommands || !args.is_empty() {
        let mut usage = path.to_string();
        for a in &args {
            let t = flag_text(a);
            if a.is_required_set() || a.is_positional() {
                usage.push_str(&format!(" {t}"));
            } else {
                usage.push_str(&format!(" [{t}]"));
            }
        }
        out.push_str(&format!("{usage}\n    {about}\n"));
        for a in &args {
            out.push_str(&format!("    {:<22} {}\n", flag_text(a), help_of(a)));
        }
    } else {
        out.push_str(&format!("{path} ...\n    {about}\n"));
    }
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        render(sub, &format!("{path} {}", sub.get_name()), out);
    }
}

fn reference() -> String {
    let cmd = Cli::command();
    let mut out = String::new();
    out.push_str("Every command takes:\n");
    for a in cmd.get_arguments().filter(|a| a.is_global_set()) {
        out.push_str(&format!("    {:<22} {}\n", flag_text(a), help_of(a)));
    }
    out.push('\n');
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        render(sub, &format!("roomgate {}", sub.get_name()), &mut out);
    }
    out
}

#[test]
fn readme_command_reference_is_the_binarys_help() {
    let expected = format!("```text\n{}```", reference());
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let (begin, end) = (
        "<!-- roomgate-help: begin -->\n",
        "\n<!-- roomgate-help: end -->",
    );
    let found = readme.find(begin).and_then(|b| {
        readme[b..]
            .find(end)
            .map(|e| &readme[b + begin.len()..b + e])
    });
    let target = concat!(env!("CARGO_MANIFEST_DIR"), "/target/cli-reference.md");
    if found != Some(expected.as_str()) {
        let _ = std::fs::write(target, format!("{begin}{expected}{end}\n"));
    }
    assert!(
        found == Some(expected.as_str()),
        "README's command reference (between the roomgate-help markers) differs from the \
         binary's help; the expected block is in {target}"
    );
}

#[test]
fn every_command_and_flag_has_help_text() {
    fn walk(cmd: &clap::Command, path: &str) {
        assert!(cmd.get_about().is_some(), "{path} has no description");
        for a in cmd.get_arguments() {
            if matches!(a.get_id().as_str(), "help" | "version") {
                continue;
            }
            assert!(
                a.get_help().is_some(),
                "{path} {} has no help text",
                a.get_id()
            );
        }
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            walk(sub, &format!("{path} {}", sub.get_name()));
        }
    }
    walk(&Cli::command(), "roomgate");
    // The account commands say that they manage accounts.
    let cmd = Cli::command();
    let user = cmd
        .get_subcommands()
        .find(|s| s.get_name() == "user")
        .expect("user");
    assert!(
        user.get_about()
            .is_some_and(|a| a.to_string().contains("accounts")),
        "user is described as managing accounts"
    );
}
