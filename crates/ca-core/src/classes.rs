//! The classes the models of this project segment into, by id: the one
//! class list of the workspace (`ca-data` maps the pets' trimaps onto it,
//! the trainer names its metrics by it).

/// Class id of the background.
pub const BACKGROUND: u8 = 0;
/// Class id of the pet / object.
pub const OBJECT: u8 = 1;
/// Class id of the boundary band.
pub const BOUNDARY: u8 = 2;
/// Number of classes ([`crate::CellConfig::num_classes`] by default).
pub const NUM_CLASSES: usize = 3;
/// Human-readable class names, indexed by class id.
pub const CLASS_NAMES: [&str; NUM_CLASSES] = ["background", "object", "boundary"];

/// [`CLASS_NAMES`] as owned strings, for configs that name their classes.
pub fn class_names() -> Vec<String> {
    CLASS_NAMES.map(String::from).to_vec()
}
