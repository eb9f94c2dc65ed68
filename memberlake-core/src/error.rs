//! One classification of failures, shared by the lake, the catalog and the store: could the same
//! call succeed later?
//!
//! Each dependency's error type implements [`Classify`]; callers decide what to do with a
//! [`ErrorClass`] (retry within a budget, give a range back, fail a file), and
//! [`crate::retry::retry_transient`] retries exactly the transient ones.

/// Whether the same call could succeed later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The dependency is unavailable, overloaded, timing out or restarting: the same call may
    /// succeed later, so retrying it (with backoff, within a budget) is worthwhile.
    Transient,
    /// The call itself is wrong, or its target is gone or changed (invalid query, missing object,
    /// bad credentials, undecodable data): retrying the same call gives the same answer.
    Permanent,
}

/// An error that knows its [`ErrorClass`].
pub trait Classify {
    /// Whether the same call could succeed later.
    fn class(&self) -> ErrorClass;

    /// The same call could succeed later.
    fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }

    /// Retrying the same call gives the same answer.
    fn is_permanent(&self) -> bool {
        self.class() == ErrorClass::Permanent
    }
}

impl<E: Classify + ?Sized> Classify for Box<E> {
    fn class(&self) -> ErrorClass {
        (**self).class()
    }
}

impl<E: Classify + ?Sized> Classify for std::sync::Arc<E> {
    fn class(&self) -> ErrorClass {
        (**self).class()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct Fixed(ErrorClass);

    impl Classify for Fixed {
        fn class(&self) -> ErrorClass {
            self.0
        }
    }

    #[test]
    fn the_predicates_follow_the_class() {
        let transient = Fixed(ErrorClass::Transient);
        let permanent = Fixed(ErrorClass::Permanent);
        assert!(transient.is_transient() && !transient.is_permanent());
        assert!(permanent.is_permanent() && !permanent.is_transient());
    }

    #[test]
    fn shared_and_boxed_errors_classify_like_the_error() {
        let shared = Arc::new(Fixed(ErrorClass::Transient));
        assert!(shared.is_transient());
        let boxed: Box<Fixed> = Box::new(Fixed(ErrorClass::Permanent));
        assert!(boxed.is_permanent());
    }
}
