//! The REST routes of `rest_api.py`: `PUT`/`GET /customer/<id>`, with Flask-RESTful's output
//! format and a JSON error for every failure (see the crate docs for the full table). Request
//! bodies are customer data: they are never logged and never echoed in errors.

use percent_encoding::percent_decode;

use crate::http::{Request, Response};
use crate::pyjson;
use crate::store::Store;

const CUSTOMER_PREFIX: &str = "/customer/";
pub const ALLOWED: &str = "GET, HEAD, PUT";

/// Answers one request.
pub fn handle(req: &Request, store: &Store) -> Response {
    let path = origin_path(&req.target);
    let Some(raw_id) = path.strip_prefix(CUSTOMER_PREFIX) else {
        return Response::error(404, "not found");
    };
    if raw_id.is_empty() || raw_id.contains('/') {
        return Response::error(404, "not found");
    }
    let Ok(id) = percent_decode(raw_id.as_bytes()).decode_utf8() else {
        return Response::error(400, "customer id is not valid UTF-8");
    };
    match req.method.as_str() {
        "GET" | "HEAD" => get(store, &id),
        "PUT" => put(store, &id, req),
        _ => {
            let mut response = Response::error(405, "method not allowed");
            response.allow = Some(ALLOWED);
            response
        }
    }
}

/// The path of a request target without its query; the absolute form (`https://host/path`,
/// RFC 9112 §3.2.2) is reduced to its path.
fn origin_path(target: &str) -> &str {
    let without_scheme = ["https://", "http://"].iter().find_map(|scheme| {
        target
            .get(..scheme.len())
            .filter(|head| head.eq_ignore_ascii_case(scheme))
            .map(|_| target.get(scheme.len()..).unwrap_or_default())
    });
    let path = match without_scheme {
        Some(rest) => rest
            .find('/')
            .map_or("/", |at| rest.get(at..).unwrap_or("/")),
        None => target,
    };
    path.split_once('?').map_or(path, |(p, _)| p)
}

fn get(store: &Store, id: &str) -> Response {
    match store.get(id) {
        Ok(Some(data)) => Response::json(200, pyjson::object(&[(id, &data)])),
        Ok(None) => Response::error(404, "customer not found"),
        Err(err) => internal(&err),
    }
}

fn put(store: &Store, id: &str, req: &Request) -> Response {
    let data = match data_field(req) {
        Ok(data) => data,
        Err(rejection) => return rejection.response(),
    };
    match store.put(id, &data) {
        Ok(()) => Response::json(200, pyjson::object(&[(id, &data)])),
        Err(err) => internal(&err),
    }
}

fn internal(err: &crate::store::StoreError) -> Response {
    // The store error names the query failure, never the customer data.
    eprintln!("app: {err}");
    Response::error(500, "internal server error")
}

/// Why a `PUT` body yields no `data`.
#[derive(Debug, PartialEq, Eq)]
enum BodyRejection {
    MissingData,
    DataNotString,
    NotUtf8,
    InvalidJson,
    UnsupportedType,
}

impl BodyRejection {
    fn response(&self) -> Response {
        match self {
            BodyRejection::MissingData => Response::error(
                400,
                "missing \"data\": send form field data=... or JSON {\"data\": \"...\"}",
            ),
            BodyRejection::DataNotString => Response::error(400, "\"data\" must be a string"),
            BodyRejection::NotUtf8 => Response::error(400, "request body is not valid UTF-8"),
            BodyRejection::InvalidJson => Response::error(400, "request body is not valid JSON"),
            BodyRejection::UnsupportedType => Response::error(
                415,
                "use Content-Type application/x-www-form-urlencoded or application/json",
            ),
        }
    }
}

/// The `data` value from a form or JSON body, chosen by Content-Type (none means form).
fn data_field(req: &Request) -> Result<String, BodyRejection> {
    let media_type = req.content_type.as_deref().map(|ct| {
        ct.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    });
    match media_type.as_deref() {
        None | Some("application/x-www-form-urlencoded") => form_data(&req.body),
        Some("application/json") => json_data(&req.body),
        Some(_) => Err(BodyRejection::UnsupportedType),
    }
}

/// First `data` field of an urlencoded form, decoded as Werkzeug does (`+` is a space, `%XX`
/// a byte, an invalid escape is kept literally), then required to be UTF-8.
fn form_data(body: &[u8]) -> Result<String, BodyRejection> {
    for pair in body.split(|&b| b == b'&') {
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (
                pair.get(..eq).unwrap_or_default(),
                pair.get(eq + 1..).unwrap_or_default(),
            ),
            None => (pair, &b""[..]),
        };
        if form_decode(name) == b"data" {
            return String::from_utf8(form_decode(value)).map_err(|_| BodyRejection::NotUtf8);
        }
    }
    Err(BodyRejection::MissingData)
}

fn form_decode(component: &[u8]) -> Vec<u8> {
    let spaced: Vec<u8> = component
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_decode(&spaced).collect()
}

fn json_data(body: &[u8]) -> Result<String, BodyRejection> {
    let text = std::str::from_utf8(body).map_err(|_| BodyRejection::NotUtf8)?;
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|_| BodyRejection::InvalidJson)?;
    match value.get("data") {
        Some(serde_json::Value::String(data)) => Ok(data.clone()),
        Some(_) => Err(BodyRejection::DataNotString),
        None => Err(BodyRejection::MissingData),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, target: &str, content_type: Option<&str>, body: &[u8]) -> Request {
        Request {
            method: method.into(),
            target: target.into(),
            minor_version: 1,
            keep_alive: true,
            content_type: content_type.map(Into::into),
            body: body.to_vec(),
        }
    }

    fn store(name: &str) -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("app-api-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        (Store::open(&dir).unwrap(), dir)
    }

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

    #[test]
    fn form_values_are_plus_and_percent_decoded() {
        assert_eq!(form_data(b"data=Tom").unwrap(), "Tom");
        assert_eq!(
            form_data(b"x=1&data=a+b%2Bc%26d&data=second").unwrap(),
            "a b+c&d"
        );
        assert_eq!(form_data(b"d%61ta=%C3%A9").unwrap(), "é");
        assert_eq!(form_data(b"data=100%").unwrap(), "100%");
        assert_eq!(form_data(b"data=%zz").unwrap(), "%zz");
        assert_eq!(form_data(b"data").unwrap(), "");
        assert_eq!(form_data(b"data=").unwrap(), "");
    }

    #[test]
    fn a_form_without_data_or_with_non_utf8_is_rejected() {
        assert_eq!(form_data(b"").unwrap_err(), BodyRejection::MissingData);
        assert_eq!(
            form_data(b"Data=Tom").unwrap_err(),
            BodyRejection::MissingData
        );
        assert_eq!(form_data(b"data=%FF").unwrap_err(), BodyRejection::NotUtf8);
        assert_eq!(form_data(b"data=\xff").unwrap_err(), BodyRejection::NotUtf8);
    }

    #[test]
    fn json_bodies_need_a_string_data_member() {
        assert_eq!(json_data(br#"{"data": "Tom"}"#).unwrap(), "Tom");
        assert_eq!(
            json_data(br#"{"data": 5}"#).unwrap_err(),
            BodyRejection::DataNotString
        );
        assert_eq!(
            json_data(br#"{"other": "x"}"#).unwrap_err(),
            BodyRejection::MissingData
        );
        assert_eq!(
            json_data(br#"["data"]"#).unwrap_err(),
            BodyRejection::MissingData
        );
        assert_eq!(json_data(b"{").unwrap_err(), BodyRejection::InvalidJson);
        assert_eq!(json_data(b"\xff").unwrap_err(), BodyRejection::NotUtf8);
    }

    #[test]
    fn arbitrary_bodies_never_panic_the_decoders() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 24) as usize;
            let body: Vec<u8> = (0..len)
                .map(|i| b"data=%+&{}\"\\:\xff\xc3\xa9aZ0"[((state >> (i % 56)) % 18) as usize])
                .collect();
            if let Ok(data) = form_data(&body) {
                assert!(data.len() <= body.len());
            }
            let _ = json_data(&body);
        }
    }

    #[test]
    fn the_content_type_selects_the_decoder() {
        let json = request(
            "PUT",
            "/",
            Some("Application/JSON; charset=utf-8"),
            br#"{"data":"x"}"#,
        );
        assert_eq!(data_field(&json).unwrap(), "x");
        let bare = request("PUT", "/", None, b"data=y");
        assert_eq!(data_field(&bare).unwrap(), "y");
        let multipart = request("PUT", "/", Some("multipart/form-data; boundary=z"), b"");
        assert_eq!(
            data_field(&multipart).unwrap_err(),
            BodyRejection::UnsupportedType
        );
    }

    #[test]
    fn put_then_get_answers_in_flask_format() {
        let (store, dir) = store("roundtrip");
        let put = handle(&request("PUT", "/customer/1", FORM, b"data=Tom"), &store);
        assert_eq!((put.status, put.body.as_str()), (200, "{\"1\": \"Tom\"}\n"));
        let get = handle(&request("GET", "/customer/1?verbose=1", None, b""), &store);
        assert_eq!((get.status, get.body.as_str()), (200, "{\"1\": \"Tom\"}\n"));
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn targets_are_reduced_to_their_path() {
        assert_eq!(origin_path("/customer/1?x=y"), "/customer/1");
        assert_eq!(
            origin_path("https://localhost:4996/customer/1?x"),
            "/customer/1"
        );
        assert_eq!(origin_path("HTTP://h/customer/2"), "/customer/2");
        assert_eq!(origin_path("https://localhost"), "/");
        assert_eq!(origin_path("*"), "*");
    }

    #[test]
    fn ids_are_percent_decoded_single_segments() {
        let (store, dir) = store("ids");
        let put = handle(
            &request("PUT", "/customer/a%20b%2Fc", FORM, b"data=x"),
            &store,
        );
        assert_eq!(put.body, "{\"a b/c\": \"x\"}\n");
        for target in ["/customer/", "/customer/a/b", "/customers/1", "/"] {
            assert_eq!(
                handle(&request("GET", target, None, b""), &store).status,
                404
            );
        }
        let bad = handle(&request("GET", "/customer/%FF", None, b""), &store);
        assert_eq!(bad.status, 400);
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn unknown_ids_and_methods_get_json_errors() {
        let (store, dir) = store("errors");
        let missing = handle(&request("GET", "/customer/404", None, b""), &store);
        assert_eq!(
            (missing.status, missing.body.as_str()),
            (404, "{\"error\": \"customer not found\"}\n")
        );
        let delete = handle(&request("DELETE", "/customer/1", None, b""), &store);
        assert_eq!((delete.status, delete.allow), (405, Some(ALLOWED)));
        let empty = handle(&request("PUT", "/customer/1", FORM, b""), &store);
        assert_eq!(empty.status, 400);
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }
}
