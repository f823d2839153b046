//! Content converters run by `Processor` hops (MIAP phase 3). The broker puts
//! a live processor for the destination medium on the route.

pub mod sms;

/// The member id of the text-to-SMS processor.
pub const SMS_PROCESSOR: &str = "proc-sms-1";
