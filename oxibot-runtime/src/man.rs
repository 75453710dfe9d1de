//! `PROGRAM --man-page`: the program's manual in roff, from its own
//! argument definitions, so that the packages' man pages never drift from
//! `--help`. Every daemon asks first, before it parses its arguments.

use std::process::ExitCode;

/// Some(exit status) when the first argument is `--man-page`: the manual
/// (section 8) was printed, and the program ends there.
pub fn printed_if_asked<A: clap::CommandFactory>() -> Option<ExitCode> {
    if std::env::args().nth(1).as_deref() != Some("--man-page") {
        return None;
    }
    let man = clap_mangen::Man::new(A::command()).section("8");
    Some(ExitCode::from(u8::from(man.render(&mut std::io::stdout()).is_err())))
}
