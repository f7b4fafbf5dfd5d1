//! Bearer-token check for the admin service (and, when configured, inference).
use std::sync::Arc;

use tonic::{service::Interceptor, Request, Status};

/// Checks `authorization: Bearer <token>` on every request.
#[derive(Clone, Debug)]
pub struct BearerAuth {
    token: Option<Arc<str>>,
    required: bool,
}

impl BearerAuth {
    /// A check against `token`; with none every request is refused, since an admin
    /// API without a token configured must not be open.
    pub fn new(token: Option<&str>, required: bool) -> Self {
        let token = token.filter(|t| !t.is_empty()).map(Arc::from);
        BearerAuth { token, required }
    }
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Interceptor for BearerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        if !self.required {
            return Ok(request);
        }
        let Some(token) = &self.token else {
            return Err(Status::unauthenticated(
                "admin API disabled: the server has no admin.token configured",
            ));
        };
        let header = request
            .metadata()
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing authorization: Bearer <token>"))?;
        let given = header
            .as_bytes()
            .strip_prefix(b"Bearer ")
            .unwrap_or_default();
        if same(given, token.as_bytes()) {
            Ok(request)
        } else {
            Err(Status::unauthenticated("invalid bearer token"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(auth: &mut BearerAuth, header: Option<&str>) -> Result<(), tonic::Code> {
        let mut r = Request::new(());
        if let Some(h) = header {
            r.metadata_mut().insert("authorization", h.parse().unwrap());
        }
        auth.call(r).map(|_| ()).map_err(|s| s.code())
    }

    #[test]
    fn checks_the_token() {
        let mut a = BearerAuth::new(Some("s3cret"), true);
        assert_eq!(call(&mut a, Some("Bearer s3cret")), Ok(()));
        assert_eq!(
            call(&mut a, Some("Bearer s3cre")),
            Err(tonic::Code::Unauthenticated)
        );
        assert_eq!(
            call(&mut a, Some("s3cret")),
            Err(tonic::Code::Unauthenticated)
        );
        assert_eq!(call(&mut a, None), Err(tonic::Code::Unauthenticated));
        let mut off = BearerAuth::new(None, true);
        assert_eq!(
            call(&mut off, Some("Bearer ")),
            Err(tonic::Code::Unauthenticated)
        );
        let mut open = BearerAuth::new(None, false);
        assert_eq!(call(&mut open, None), Ok(()));
    }
}
