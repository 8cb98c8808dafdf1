//! Running a whole job: through systemd (`run`), or in this process (`run --here`).

pub mod here;
pub mod systemd;
