//! A client's side of an SMTP session, as the server reads it: lines of at
//! most the server's lengths, each parsed as a command (with MAIL/RCPT
//! paths), and after each `DATA` the data section to its end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::gateways::email::parse::{path, read_line, Command, Data};

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut r = tokio::io::BufReader::with_capacity(64, data);
        while let Ok(Some(line)) = read_line(&mut r, 1000).await {
            let switchboard::gateways::email::parse::Line::Text(text) = line else {
                continue;
            };
            match Command::parse(&text) {
                Command::Mail(arg) => {
                    let _ = path(arg, "FROM:");
                }
                Command::Rcpt(arg) => {
                    let _ = path(arg, "TO:");
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
