pub mod approval;
pub mod audit;
pub mod health;
pub mod intake;
pub mod patients;
pub mod payors;
pub mod plans;
pub mod referrals;
