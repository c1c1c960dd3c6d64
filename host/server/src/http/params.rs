//! [`Params`]: a request's query parameters, decoded, in order, as an extractor.

use axum::extract::{FromRequestParts, Query};
use axum::http::Uri;
use axum::http::request::Parts;

use super::error::ApiError;

/// Every query parameter of a request, decoded (`application/x-www-form-urlencoded`: `+` is a
/// space, `%XX` a byte), in the order given. A name given twice keeps both; [`Params::get`]
/// answers the first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// The parameters of `uri`'s query.
    pub fn from_uri(uri: &Uri) -> Result<Params, ApiError> {
        let Query(pairs) = Query::try_from_uri(uri)
            .map_err(|rejection| ApiError::bad_request("M_INVALID_PARAM", rejection.body_text()))?;
        Ok(Params(pairs))
    }

    /// The value of the first parameter named `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find_map(|(key, value)| (key == name).then_some(value.as_str()))
    }

    /// The `(name, value)` pairs, in order.
    pub fn into_pairs(self) -> Vec<(String, String)> {
        self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Params, ApiError> {
        Params::from_uri(&parts.uri)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn params(uri: &str) -> Params {
        Params::from_uri(&uri.parse().unwrap()).unwrap()
    }

    #[test]
    fn decodes_in_order_and_answers_the_first_of_a_name() {
        let p = params("/x?b=2&a=%21x%3A1&a=no&c&d=a+b&&e=%zz");
        assert_eq!(p.get("a"), Some("!x:1"));
        assert_eq!(p.get("c"), Some(""));
        assert_eq!(p.get("d"), Some("a b"));
        assert_eq!(p.get("e"), Some("%zz"));
        assert_eq!(p.get("f"), None);
        let names: Vec<String> = p.into_pairs().into_iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["b", "a", "a", "c", "d", "e"]);
        assert_eq!(params("/x"), Params::default());
    }
}
