//! HTTP query strings (`http/params.rs`, every API endpoint's parameters) and the writer's
//! catch-up tokens read from them. The input is a request target; one `http` accepts is
//! decoded. Decoded pairs, form-encoded again, decode to the same pairs; a token is accepted
//! only when its parameter is a non-negative integer, and then is that integer.
#![no_main]

use http::Uri;
use libfuzzer_sys::fuzz_target;
use streamhost_server::fuzzing::catch_up_tokens;
use streamhost_server::http::Params;

fuzz_target!(|data: &[u8]| {
    let Ok(uri) = Uri::try_from(data) else {
        return;
    };
    let Ok(params) = Params::from_uri(&uri) else {
        return;
    };
    let (from, upto) = catch_up_tokens(&params);
    for (name, token) in [("from_token", from), ("upto_token", upto)] {
        let written = params.get(name).map(str::parse::<i64>);
        match token {
            Ok(token) => assert!(token.0 >= 0 && written == Some(Ok(token.0))),
            Err(_) => assert!(!matches!(written, Some(Ok(n)) if n >= 0)),
        }
    }
    let pairs = params.into_pairs();
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&pairs)
        .finish();
    let again: Uri = format!("/x?{query}")
        .parse()
        .expect("an encoded query is a valid URI");
    let again = Params::from_uri(&again).expect("an encoded query decodes");
    assert_eq!(
        again.into_pairs(),
        pairs,
        "decode -> encode -> decode changed the pairs"
    );
});
