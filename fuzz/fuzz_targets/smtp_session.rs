//! A client's side of an SMTP session, as the server reads it: lines of at
//! most the server's lengths, each parsed as a command (with MAIL/RCPT
//! paths), after each `AUTH` its answers (PLAIN's one, LOGIN's two), and
//! after each `DATA` the data section to its end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::gateways::email::auth::{self, Answer, Mechanism, Start};
use switchboard::gateways::email::parse::{path, read_line, Command, Data, Line};

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut r = tokio::io::BufReader::with_capacity(64, data);
        while let Ok(Some(line)) = read_line(&mut r, 1000).await {
            let Line::Text(text) = line else {
                continue;
            };
            match Command::parse(&text) {
                Command::Mail(arg) => {
                    let _ = path(arg, "FROM:");
                }
                Command::Rcpt(arg) => {
                    let _ = path(arg, "TO:");
                }
                Command::Auth(arg) => {
                    let Start::Mechanism(mech, initial) = auth::start(arg) else {
                        continue;
                    };
                    let _ = auth::user_id(arg, &["localhost".to_string()]);
                    let first = match initial {
                        Some(i) => auth::answer(i.as_bytes()),
                        None => next_answer(&mut r).await,
                    };
                    let Answer::Bytes(first) = first else {
                        continue;
                    };
                    match mech {
                        Mechanism::Plain => {
                            let _ = auth::plain(&first);
                        }
                        Mechanism::Login => {
                            if let Answer::Bytes(token) = next_answer(&mut r).await {
                                let _ = auth::login(&first, &token);
                            }
                        }
                    }
                }
                Command::Data => {
                    let mut d = Data::new(4096);
                    while let Ok(Some(l)) = read_line(&mut r, 64 * 1024).await {
                        if d.line(&l) {
                            break;
                        }
                    }
                    if let Some(raw) = d.finish() {
                        assert!(raw.len() <= 4096);
                    }
                }
                _ => {}
            }
        }
    });
});

/// The next line read as an AUTH answer.
async fn next_answer<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Answer {
    match read_line(r, 1000).await {
        Ok(Some(Line::Text(l))) => auth::answer(&l),
        _ => Answer::Cancelled,
    }
}
