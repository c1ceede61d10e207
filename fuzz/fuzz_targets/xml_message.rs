//! An event message in XML, as a publisher POSTs it.
#![no_main]

mod message;

use hub::Encoding;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| message::publish_body(data, Encoding::Xml));
