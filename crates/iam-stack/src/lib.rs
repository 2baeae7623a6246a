//! The iam stack (see issue tracker): not implemented yet.
