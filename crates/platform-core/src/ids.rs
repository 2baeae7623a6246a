//! Typed AWS identifiers: [`aws_id!`](crate::aws_id) makes a string newtype per kind of id or ARN,
//! so that a resource that wants a role's ARN cannot be handed a policy's.

/// Declares a typed AWS identifier: a string newtype, serialised as the plain string (state stays
/// the same as with a `String`), shown as it is, built with `new`, read as a `&str` (it derefs to
/// one) and handed to the SDK as it is (`&id` converts into a `String`).
///
/// Stack crates declare one per kind of id they hand on (`RoleArn`, `PolicyArn`, `VpcId`, ...), so
/// that the outputs and inputs that carry them are typed: a `Ref<PolicyArn>` where an
/// `Input<RoleArn>` is wanted does not compile. The crate that uses it needs `serde` as a dependency.
///
/// ```
/// platform_core::aws_id! {
///     /// An IAM role's ARN.
///     pub RoleArn
/// }
/// platform_core::aws_id! {
///     /// An IAM managed policy's ARN.
///     pub PolicyArn
/// }
/// let role = RoleArn::new("arn:aws:iam::123456789012:role/frontend");
/// assert_eq!(role.as_str(), "arn:aws:iam::123456789012:role/frontend");
/// assert_eq!(serde_json::to_value(&role).unwrap(), "arn:aws:iam::123456789012:role/frontend");
/// ```
///
/// ```compile_fail,E0308
/// # platform_core::aws_id! { pub RoleArn }
/// # platform_core::aws_id! { pub PolicyArn }
/// fn run_as(role: platform_core::Input<RoleArn>) {}
/// let policy = platform_core::Ref::<PolicyArn>::new("policy", "arn");
/// run_as(platform_core::Input::Ref(policy));
/// ```
#[macro_export]
macro_rules! aws_id {
    ($(#[$meta:meta])* $vis:vis $name:ident) => {
        $(#[$meta])*
        #[derive(
            Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
            serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        $vis struct $name(String);

        impl $name {
            /// Wraps `value` as given (AWS checks it).
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The id as a string, for the SDK.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl ::std::convert::AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl ::std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl ::std::convert::From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl ::std::convert::From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl ::std::convert::From<&$name> for String {
            fn from(id: &$name) -> String {
                id.0.clone()
            }
        }

        impl ::std::convert::From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl ::std::cmp::PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl ::std::cmp::PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl ::std::cmp::PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}
