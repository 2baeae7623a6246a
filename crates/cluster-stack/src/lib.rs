//! The cluster stack (see issue tracker): not implemented yet.
