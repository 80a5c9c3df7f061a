"""Calendar invitations across sends: the ledger's record of each sequence (store), and what a
send carries, updates and cancels (send). Building the iCalendar is compose.invitation's;
reading the replies is receipts.itip's."""
