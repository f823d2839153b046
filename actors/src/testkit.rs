//! Test helpers shared by the actor tests: a recording member, and waiting
//! for what it recorded.
#![cfg(test)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;

use crate::bus::MiapFrame;
use switchboard_core::protocol::Frame;

/// Records every frame it is sent.
#[derive(Default, Clone)]
pub struct Recorder {
    pub frames: Arc<Mutex<Vec<MiapFrame>>>,
    /// Its mailbox, once started (one actor per recorder).
    addr: Arc<Mutex<Option<Addr<Recorder>>>>,
}

impl Actor for Recorder {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let mut addr = self.addr.lock().unwrap();
        assert!(addr.is_none(), "a recorder is started once");
        *addr = Some(ctx.address());
    }
}

/// Answered once every frame sent to the recorder before it is recorded.
#[derive(Message)]
#[rtype(result = "()")]
struct Fence;

impl Handler<Fence> for Recorder {
    type Result = ();
    fn handle(&mut self, _: Fence, _: &mut Context<Self>) {}
}

impl Handler<MiapFrame> for Recorder {
    type Result = ();
    fn handle(&mut self, m: MiapFrame, _: &mut Context<Self>) {
        self.frames.lock().unwrap().push(m);
    }
}

impl Recorder {
    /// Waits (2 s at most) for a frame matching `pick`, removes and returns it.
    pub async fn take<T>(&self, what: &str, pick: impl Fn(&Frame) -> Option<T>) -> T {
        for _ in 0..400 {
            {
                let mut f = self.frames.lock().unwrap();
                if let Some(i) = f.iter().position(|m| pick(&m.frame).is_some()) {
                    let m = f.remove(i);
                    return pick(&m.frame).unwrap();
                }
            }
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("no {what} frame; recorded: {:?}", self.kinds());
    }

    /// Asserts nothing matching `pick` was sent to the recorder before this
    /// call: a fence through its mailbox (no sleep) makes sure each such
    /// frame was recorded. The caller first lets the actor under test
    /// finish what it was sent (an answered `send`, a frame taken that it
    /// sends in the same handler), so any frame it would send is on its
    /// way.
    pub async fn none<T>(&self, what: &str, pick: impl Fn(&Frame) -> Option<T>) {
        let addr = self.addr.lock().unwrap().clone();
        addr.expect("the recorder is started")
            .send(Fence)
            .await
            .unwrap();
        let f = self.frames.lock().unwrap();
        assert!(
            !f.iter().any(|m| pick(&m.frame).is_some()),
            "unexpected {what}: {:?}",
            self.kinds_locked(&f)
        );
    }

    pub fn kinds(&self) -> Vec<&'static str> {
        self.kinds_locked(&self.frames.lock().unwrap())
    }

    fn kinds_locked(&self, f: &[MiapFrame]) -> Vec<&'static str> {
        f.iter().map(|m| m.frame.kind()).collect()
    }
}
