pub mod health;
pub mod intake;
pub mod referrals;
