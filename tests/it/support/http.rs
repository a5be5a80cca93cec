//! Plain HTTP requests to a [`TestApp`], as a browser makes them: pages, the name form,
//! assets, probes; and reading the cookie a response sets.

use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::app::TestApp;

pub struct HttpResponse {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl TestApp {
    pub async fn get(&self, path: &str) -> HttpResponse {
        self.request("GET", path).await
    }

    pub async fn request(&self, method: &str, path: &str) -> HttpResponse {
        self.request_with(method, path, &[]).await
    }

    pub async fn request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> HttpResponse {
        self.request_body(method, path, headers, "").await
    }

    pub async fn request_body(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> HttpResponse {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
        let mut request = hyper::Request::builder().method(method).uri(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(bytes::Bytes::from(body.to_owned())))
            .unwrap();
        let response = client.request(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        HttpResponse {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// Visits a page as a new browser would: returns the identity cookie (`name=value`)
    /// and the page.
    pub async fn visit(&self, path: &str) -> (String, HttpResponse) {
        let page = self.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        (set_cookie(&page), page)
    }

    /// A new visitor who took `name`: their identity cookie (`name=value`).
    pub async fn named(&self, name: &str) -> String {
        let (cookie, _) = self.visit("/").await;
        let renamed = self.rename(&cookie, name).await;
        assert_eq!(renamed.status, 200, "{}", renamed.body);
        set_cookie(&renamed)
    }

    /// Renames the user behind `cookie`; returns the response (with the new cookie).
    pub async fn rename(&self, cookie: &str, name: &str) -> HttpResponse {
        self.rename_with(name, &[("Cookie", cookie)]).await
    }

    /// Sends the name form as the page does (same origin, through htmx), with `headers`
    /// added: the visitor's cookie, a proxy's `X-Forwarded-For`.
    pub async fn rename_with(&self, name: &str, headers: &[(&str, &str)]) -> HttpResponse {
        let body = format!("name={}", form_encode(name));
        let origin = self.url("");
        let mut all = vec![
            ("Origin", origin.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("HX-Request", "true"),
        ];
        all.extend_from_slice(headers);
        self.request_body("POST", "/name", &all, &body).await
    }
}

/// `application/x-www-form-urlencoded` for one value.
pub fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The cookie pair (`name=value`) a response sets.
pub fn set_cookie(response: &HttpResponse) -> String {
    let cookie = response.headers["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_owned()
}
