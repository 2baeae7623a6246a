//! The network stack (see issue tracker): not implemented yet.
