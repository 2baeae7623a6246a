//! How user tags change between two runs, shared by every AWS resource kind.

use std::collections::BTreeMap;
use std::future::Future;

/// The prefix of the engine's own tag keys ([`STACK_TAG`](crate::resource::STACK_TAG),
/// [`RESOURCE_TAG`](crate::resource::RESOURCE_TAG), [`INSTANCE_TAG`](crate::resource::INSTANCE_TAG)).
pub const ENGINE_TAG_PREFIX: &str = "platform:";

/// The user's tags among `tags` as AWS answered them: the engine's own (`platform:...`) left out,
/// so that `read` reports what the user declared.
///
/// ```
/// use platform_core::resource::user_tags;
/// let user = user_tags([("team", "web"), ("platform:stack", "network")]);
/// assert_eq!(user.into_iter().collect::<Vec<_>>(), [("team".to_owned(), "web".to_owned())]);
/// ```
pub fn user_tags<K: AsRef<str>, V: AsRef<str>>(
    tags: impl IntoIterator<Item = (K, V)>,
) -> BTreeMap<String, String> {
    tags.into_iter()
        .filter(|(k, _)| !k.as_ref().starts_with(ENGINE_TAG_PREFIX))
        .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
        .collect()
}

/// What changes between two sets of user tags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TagChanges {
    /// Tags to add or overwrite.
    pub set: BTreeMap<String, String>,
    /// Keys to remove.
    pub removed: Vec<String>,
}

impl TagChanges {
    /// The changes that bring `old` to `new`.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// let old = BTreeMap::from([("a".to_owned(), "1".to_owned()), ("b".to_owned(), "2".to_owned())]);
    /// let new = BTreeMap::from([("a".to_owned(), "9".to_owned())]);
    /// let c = platform_core::resource::TagChanges::between(&old, &new);
    /// assert_eq!(c.set, BTreeMap::from([("a".to_owned(), "9".to_owned())]));
    /// assert_eq!(c.removed, ["b"]);
    /// ```
    pub fn between(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Self {
        Self {
            set: new
                .iter()
                .filter(|(k, v)| old.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            removed: old
                .keys()
                .filter(|k| !new.contains_key(*k))
                .cloned()
                .collect(),
        }
    }

    /// Carries the changes out with a service's two tag calls: `untag` with the keys to remove,
    /// then `tag` with what to set, each only when it has something to do. What every service's tag
    /// helper shares; the calls are the service's own.
    ///
    /// # Errors
    /// The first call's error; nothing after it is sent.
    pub async fn apply<E, U, T>(
        self,
        untag: impl FnOnce(Vec<String>) -> U,
        tag: impl FnOnce(BTreeMap<String, String>) -> T,
    ) -> Result<(), E>
    where
        U: Future<Output = Result<(), E>>,
        T: Future<Output = Result<(), E>>,
    {
        if !self.removed.is_empty() {
            untag(self.removed).await?;
        }
        if !self.set.is_empty() {
            tag(self.set).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn user_tags_are_the_answer_without_the_engines_own() {
        let user = user_tags([
            ("team", "web"),
            ("platform:stack", "network"),
            ("platform:instance", "abc"),
            ("Name", "ecs-vpc"),
        ]);
        assert_eq!(user, tags(&[("Name", "ecs-vpc"), ("team", "web")]));
        assert!(user_tags(Vec::<(String, String)>::new()).is_empty());
    }

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// The calls `apply` makes for `old` -> `new`.
    fn calls(old: &[(&str, &str)], new: &[(&str, &str)]) -> Vec<String> {
        let made = Mutex::new(Vec::new());
        let changes = TagChanges::between(&tags(old), &tags(new));
        let untag = |keys: Vec<String>| {
            made.lock().unwrap().push(format!("untag {keys:?}"));
            async { Ok::<(), ()>(()) }
        };
        let tag = |set: BTreeMap<String, String>| {
            made.lock().unwrap().push(format!("tag {set:?}"));
            async { Ok::<(), ()>(()) }
        };
        block_on(changes.apply(untag, tag)).unwrap();
        made.into_inner().unwrap()
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn apply_untags_first_then_tags_and_skips_a_call_with_nothing_to_do() {
        assert_eq!(
            calls(&[("a", "1"), ("b", "2")], &[("a", "9")]),
            [r#"untag ["b"]"#, r#"tag {"a": "9"}"#]
        );
        assert_eq!(calls(&[], &[("a", "1")]), [r#"tag {"a": "1"}"#]);
        assert_eq!(calls(&[("a", "1")], &[]), [r#"untag ["a"]"#]);
        assert!(calls(&[("a", "1")], &[("a", "1")]).is_empty());
    }

    #[test]
    fn apply_stops_at_the_first_failure() {
        let changes = TagChanges::between(&tags(&[("a", "1")]), &tags(&[("b", "2")]));
        let tagged = Mutex::new(false);
        let result = block_on(changes.apply(
            |_| async { Err("untag failed") },
            |_| {
                *tagged.lock().unwrap() = true;
                async { Ok(()) }
            },
        ));
        assert_eq!(result, Err("untag failed"));
        assert!(!*tagged.lock().unwrap());
    }
}
