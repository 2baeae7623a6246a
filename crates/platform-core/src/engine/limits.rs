//! The concurrency bounds shared by every run of an engine: overall and per AWS service.

use crate::sync::Locked;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

#[derive(Clone)]
pub(super) struct Limits {
    global: Arc<Semaphore>,
    services: Arc<HashMap<String, Arc<Semaphore>>>,
    default: usize,
    extra: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl Limits {
    pub(super) fn new(global: usize, services: &HashMap<String, usize>, default: usize) -> Self {
        Self {
            global: Arc::new(Semaphore::new(global)),
            services: Arc::new(
                services
                    .iter()
                    .map(|(k, v)| (k.clone(), Arc::new(Semaphore::new(*v))))
                    .collect(),
            ),
            default,
            extra: Arc::default(),
        }
    }

    /// Takes the service's permit, then the global one (always in that order: no deadlock, and a task
    /// waiting on a busy service does not hold a global slot).
    pub(super) async fn acquire(
        &self,
        service: &str,
    ) -> (
        tokio::sync::OwnedSemaphorePermit,
        tokio::sync::OwnedSemaphorePermit,
    ) {
        let sem = match self.services.get(service) {
            Some(s) => s.clone(),
            None => self
                .extra
                .locked()
                .entry(service.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.default)))
                .clone(),
        };
        // The semaphores are never closed, so acquiring cannot fail.
        let s = sem
            .acquire_owned()
            .await
            .unwrap_or_else(|_| unreachable!("semaphore closed"));
        let g = self
            .global
            .clone()
            .acquire_owned()
            .await
            .unwrap_or_else(|_| unreachable!("semaphore closed"));
        (s, g)
    }
}
