//! `/subscribers/{id}/people/{nhsNumber}` (PUT, DELETE) and
//! `.../children` (GET): the people a parent's app acts for. One binary,
//! deployed once per operation with `PEOPLE_OPERATION` (template.yaml).

#[tokio::main]
async fn main() -> Result<(), hub::lambda::Error> {
    let text = std::env::var("PEOPLE_OPERATION")
        .map_err(|_| "PEOPLE_OPERATION is not set: attest, end or children")?;
    let operation = hub::lambda::PeopleOperation::parse(&text)
        .ok_or_else(|| format!("PEOPLE_OPERATION {text:?} is not attest, end or children"))?;
    hub::lambda::run_people(operation).await
}
